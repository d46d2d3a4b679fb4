"""Mixed precision in one place: bf16 autocast and channels_last on CUDA, plain fp32 elsewhere.

Every GPU pass (training, validation, the CAM engine, Faith's masked forward, the counterfactual) goes
through here, so the tests can switch the bf16 paths on for the CPU and run them without a GPU.
"""

from __future__ import annotations

import torch

AMP_DEVICE_TYPES = {"cuda"}
GRAPH_DEVICES = ("cuda",)  # where CUDA graphs are recorded (tests add "cpu" to walk the fallbacks)


def uses_amp(device: torch.device | str) -> bool:
    return torch.device(device).type in AMP_DEVICE_TYPES


def autocast(device: torch.device | str, cache: bool = True) -> torch.autocast:
    """cache=False: no weight-cast cache, as passes recorded into CUDA graphs need."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_amp(device), cache_enabled=cache)


def to_device(model: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """On CUDA, channels_last too: cuDNN's bf16 tensor-core convolutions want NHWC."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if torch.device(device).type == "cuda" else model
