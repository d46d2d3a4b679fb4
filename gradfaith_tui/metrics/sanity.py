"""Model-parameter randomisation test (Adebayo et al., 2018), cascading from the output layer down.

If a method's maps barely change while the network is progressively re-initialised, they do not depend
on what the model learned: the map fails the sanity check.
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch



def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row Spearman correlation of two (B, N) tensors; 0 where a row is constant. Tied values share their
    mean rank: Grad-CAM maps hold many exact zeros, and ranking those by position made unrelated maps agree."""
    from scipy.stats import rankdata

    ra = torch.from_numpy(rankdata(a.detach().float().cpu().numpy(), axis=1)).float()
    rb = torch.from_numpy(rankdata(b.detach().float().cpu().numpy(), axis=1)).float()
    a, b = a.cpu(), b.cpu()
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    den = ra.norm(dim=1) * rb.norm(dim=1)
    const = (a.max(1).values == a.min(1).values) | (b.max(1).values == b.min(1).values)
    return torch.where(const | (den == 0), torch.zeros_like(den), (ra * rb).sum(1) / den.clamp_min(1e-12))


def _has_params(m: torch.nn.Module) -> bool:
    return any(True for _ in m.parameters())


def stages(net: torch.nn.Module, n: int = 4) -> list[list[str]]:
    """Modules with parameters from the output down, split into n groups (fewer only where there are fewer
    modules); a container child such as DenseNet's `features` or a ViT's `blocks` is opened one level. The
    net's own parameters (a ViT's position embeddings and class token) sit at the input end, in the last."""
    names = []
    for name, child in net.named_children():
        inner = [f"{name}.{k}" for k, c in child.named_children() if _has_params(c)]
        if len(inner) > 1:
            names += inner
        elif _has_params(child):
            names.append(name)
    names = names[::-1] + [p for p, _ in net.named_parameters(recurse=False)]
    n = max(1, min(n, len(names)))
    return [list(g) for g in np.array_split(np.array(names, dtype=object), n)]


def _reinit(net: torch.nn.Module, name: str, gen_seed: int) -> None:
    """Re-initialise a module (or one of the net's own parameters) as at construction; parameters of modules
    with no reset_parameters (a ViT's position embeddings, LayerScale's gamma) are drawn as timm draws them."""
    torch.manual_seed(gen_seed)
    if name in dict(net.named_parameters(recurse=False)):
        with torch.no_grad():
            torch.nn.init.trunc_normal_(getattr(net, name), std=0.02)
        return
    for m in net.get_submodule(name).modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        else:
            with torch.no_grad():
                for p in m.parameters(recurse=False):
                    torch.nn.init.trunc_normal_(p, std=0.02)


def cascading_randomisation(model, x: torch.Tensor, targets: torch.Tensor,
                            explain: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
                            n_stages: int = 4, seed: int = 0) -> list[dict]:
    """For each cumulative stage: which children are randomised and the mean Spearman rho with the trained maps.

    explain(model, x, targets) returns (B, h, w) maps; it must find its layers on the model it is given.
    """
    trained = explain(model, x, targets).flatten(1)
    rnd = copy.deepcopy(model)
    out, done = [], []
    for i, group in enumerate(stages(rnd.net, n_stages)):
        for name in group:
            _reinit(rnd.net, name, seed + i)
        done += group
        rho = spearman(trained, explain(rnd, x, targets).flatten(1))
        out.append({"stage": i + 1, "randomised": ",".join(done), "spearman": float(rho.mean())})
    return out
