"""The engine's trunk through torch.compile (`precompute --compile`): kernels fused across layers.

Nets of many small memory-bound layers gain most: DenseNet's norm, ReLU and concatenation around each of
its convolutions become one kernel each (CPU, Grad-CAM + Faith: see README). Compiling costs about a minute
per model, once per run, so it is an option for large sets, not the default. The first call compiles; if
that fails (no C++ compiler or Triton, an untraceable layer), the plain trunk runs from then on, which
computes the same, and the reason is kept in .broken.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch

Forward = Callable[[torch.Tensor], torch.Tensor]
BACKEND = "inductor"  # the tests use "aot_eager": the same tracing, without minutes of C++ code generation


class CompiledForward:
    """static: one batch shape should reach it (a CUDA graph pads every batch into the recorded one), so
    kernels are specialised to it, and a second shape (the graph failed to record) recompiles once with a
    dynamic batch rather than once per shape; otherwise the batch is dynamic from the start, so the run's
    last batch and the marked rows' pass cost no recompilation."""

    def __init__(self, fn: Forward, static: bool):
        self.fn = fn
        self.broken: str | None = None
        self.compiled_once = False
        # Inductor's C++ toolchain lookup warns "No CUDA runtime is found" on every CPU-only run: noise there.
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        try:
            self._compiled = torch.compile(fn, dynamic=None if static else True, backend=BACKEND)
        except Exception as e:  # e.g. a torch built without the compiler
            self._fail(e)

    def _fail(self, e: BaseException) -> None:
        # Dynamo wraps the backend's error (BackendCompilerFailed); its cause says what was missing.
        while getattr(e, "inner_exception", None) is not None or e.__cause__ is not None:
            e = getattr(e, "inner_exception", None) or e.__cause__
        text = str(e).strip()
        self.broken = f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"[:200]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.broken is not None:
            return self.fn(x)
        try:
            out = self._compiled(x)
        except Exception as e:  # compile-time failures surface at the call; the plain trunk is as exact
            self._fail(e)
            return self.fn(x)
        self.compiled_once = True
        return out

    def release(self) -> None:
        """Drop every compiled graph. Dynamo keeps them per code object, and all trunks share SplitNet's, so a
        run over many checkpoints would otherwise reach its recompile limit and quietly go back to eager."""
        if self.compiled_once:
            torch._dynamo.reset()
