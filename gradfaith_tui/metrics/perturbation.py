"""Deletion and insertion curves (RISE style, Petsiuk et al. 2018): a more robust faithfulness measure than one
masked forward. Deletion removes the hottest pixels first (a faithful map makes the score fall fast: low AUC);
insertion adds them to a blurred canvas (a faithful map makes it rise fast: high AUC)."""

from __future__ import annotations

import torch

from gradfaith_tui.metrics.faithfulness import blurred


@torch.no_grad()
def deletion_insertion(model, x: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, steps: int = 10,
                       baseline: str = "blur") -> tuple[torch.Tensor, torch.Tensor]:
    """(deletion AUC, insertion AUC) per case; maps at input size; AUC of the target probability over [0, 1]."""
    b, _, h, w = x.shape
    order = maps.reshape(b, -1).argsort(dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=x.device).expand(b, -1))
    canvas = blurred(x) if baseline == "blur" else torch.zeros_like(x)
    t = targets.long()[:, None]
    dele, ins = [], []
    for k in range(steps + 1):
        top = (rank < round(k / steps * h * w)).reshape(b, 1, h, w).float()
        batch = torch.cat([x * (1 - top) + canvas * top, canvas * (1 - top) + x * top])
        p = torch.softmax(model(batch).float(), 1)
        dele.append(p[:b].gather(1, t)[:, 0])
        ins.append(p[b:].gather(1, t)[:, 0])
    dx = 1.0 / steps
    auc = lambda ys: torch.trapezoid(torch.stack(ys, 1), dx=dx, dim=1)  # noqa: E731
    return auc(dele), auc(ins)
