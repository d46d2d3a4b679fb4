"""Perturbation faithfulness (paper eq. 5): how much the target class's score drops when the CAM region is removed."""

from __future__ import annotations

import numpy as np
import torch

from gradfaith_tui.models.precision import autocast

BASELINES = ("black", "mean", "blur")


def remove(x: torch.Tensor, maps: torch.Tensor, baseline: str = "black") -> torch.Tensor:
    """x ⊙ (1 - L) + b ⊙ L, with L the [0, 1] map at input size and b the baseline image."""
    L = maps[:, None] if maps.dim() == 3 else maps
    if baseline == "black":
        return x * (1 - L)
    if baseline == "mean":
        return x * (1 - L) + x.mean(dim=(-2, -1), keepdim=True) * L
    if baseline == "blur":
        return x * (1 - L) + blurred(x) * L
    raise ValueError(f"unknown baseline '{baseline}' (choose from {', '.join(BASELINES)})")


def blurred(x: torch.Tensor, sigma_fraction: float = 0.05) -> torch.Tensor:
    """A strong Gaussian blur (sigma = 5% of the side): removes detail, keeps the overall intensity."""
    import torchvision.transforms.functional as TF

    sigma = max(1.0, x.shape[-1] * sigma_fraction)
    k = int(2 * round(3 * sigma) + 1)
    return TF.gaussian_blur(x, [k, k], [sigma, sigma])


@torch.no_grad()
def faith(model, x: torch.Tensor, logits: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
          baseline: str = "black") -> tuple[torch.Tensor, torch.Tensor]:
    """(probability drop, logit drop) of the target class; logits are the model's on the clean x.

    The masked forward runs under bf16 autocast on CUDA, as the clean one does in the fast engine.
    """
    with autocast(x.device):
        masked = model(remove(x, maps, baseline)).float()
    return score_drop(logits, masked, targets)


def score_drop(logits: torch.Tensor, masked: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(probability drop, logit drop) of the target class from the clean to the masked logits."""
    t = targets.long()[:, None]
    p0 = torch.softmax(logits.float(), 1).gather(1, t)[:, 0]
    p1 = torch.softmax(masked.float(), 1).gather(1, t)[:, 0]
    return p0 - p1, logits.float().gather(1, t)[:, 0] - masked.float().gather(1, t)[:, 0]


def shuffled(maps: torch.Tensor, cases=None, seed: int = 0) -> torch.Tensor:
    """Each map's own cells at places drawn at random: the same values, so the same share of the slice removed,
    without the map's placement. Faith of a map that is no higher than its shuffled copy's shows no more than
    the map's area (every map is scaled to [0, 1] on its own, so a broad map removes more).

    cases: each row's case index (default: its row). The places are drawn from it, so a case's control is the
    same whatever batch, batch size or torchrun rank it comes in."""
    flat = maps.flatten(1)
    cells = flat.shape[1]
    rows = range(len(flat)) if cases is None else (int(c) for c in cases)
    # (case, draw) mixed into one 32-bit seed: torch's CPU generator keeps only a seed's low 32 bits
    seeds = (int(np.random.SeedSequence([r, seed]).generate_state(1)[0]) for r in rows)
    order = torch.stack([torch.randperm(cells, generator=torch.Generator().manual_seed(s))
                         for s in seeds]) if len(flat) else torch.zeros((0, cells), dtype=torch.long)
    return flat.gather(1, order.to(flat.device)).reshape(maps.shape)
