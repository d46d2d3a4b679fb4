"""The bf16 paths that CUDA runs (training, validation, CAM engine, Faith, counterfactual), run on the CPU.

CPU autocast supports bf16 too, so switching it on here exercises the same code a GPU run takes.
"""

import numpy as np
import pytest
import torch

from gradfaith_tui.cam.fast_gradcam import FastGradCAM
from gradfaith_tui.cam.layers import find
from gradfaith_tui.config import CamSettings, spec_for
from gradfaith_tui.models import precision
from gradfaith_tui.models.factory import build


@pytest.fixture
def bf16_on_cpu(monkeypatch):
    monkeypatch.setattr(precision, "AMP_DEVICE_TYPES", {"cuda", "cpu"})


def test_bf16_grad_cam_follows_the_fp32_maps(bf16_on_cpu):
    torch.manual_seed(0)
    model = build(spec_for("resnet10t"), 64).eval()
    x = torch.rand(4, 1, 64, 64)
    with FastGradCAM(model, find(model.net)) as f:
        half = f(x)
        assert half.maps.dtype == torch.float32 and torch.isfinite(half.maps).all()
        precision.AMP_DEVICE_TYPES = {"cuda"}
        full = f(x, half.targets)
    for a, b in zip(half.maps.flatten(1), full.maps.flatten(1)):
        assert np.corrcoef(a.numpy(), b.numpy())[0, 1] > 0.9


def test_training_and_precompute_run_under_bf16(bf16_on_cpu, phantoms, trained, tmp_path):
    from gradfaith_tui.models.fit import fit_all
    from gradfaith_tui.models.train import TrainConfig
    from gradfaith_tui.pipeline import precompute
    from gradfaith_tui.store.reader import CacheReader

    cfg = TrainConfig(epochs=1, batch_size=16, lr=1e-3, img_size=32)
    (out,) = fit_all(phantoms, tmp_path / "ck", [spec_for("resnet10t")], [0], cfg)
    assert (out / "model.safetensors").is_file()
    precompute(phantoms, trained, tmp_path / "cache", names=["resnet10t"], cam=CamSettings(sanity_cases=0),
               warn=lambda m: None, with_timing=False)
    r = CacheReader(tmp_path / "cache")
    faith = [v for (v,) in r.con.execute("SELECT value FROM metrics WHERE name='faith'")]
    assert len(faith) == 2 * r.n_cases and all(-1 <= v <= 1 for v in faith)
    r.close()


@pytest.mark.parametrize("amp", [False, True], ids=["fp32-clean-pass", "bf16-clean-pass"])
def test_faith_compares_scores_of_one_precision_whatever_the_engine(bf16_on_cpu, amp):
    """The library engine and rollout score the clean input in fp32; Faith's masked pass runs in bf16. A map
    that removes nothing must then still give Faith 0 and no flip, not bf16's rounding."""
    from gradfaith_tui.cam.fast_gradcam import Explained
    from gradfaith_tui.metrics.per_case import device_metrics
    from gradfaith_tui.metrics.staging import Staged

    torch.manual_seed(0)
    model = build(spec_for("resnet10t"), 64).eval()
    x = torch.rand(6, 1, 64, 64)
    with torch.no_grad(), precision.autocast(x.device, cache=False) if amp else torch.autocast("cpu", enabled=False):
        logits = model(x).float()
    ex = Explained(torch.zeros(6, 2, 2), logits, logits.argmax(1), amp=amp)  # an all-zero map: nothing removed
    s = np.zeros((6, 64, 64), bool)
    s[:, 20:40, 20:40] = True
    out = device_metrics(model, Staged.of(x, s, s, s), ex)
    assert torch.equal(out["faith"], torch.zeros(6)) and torch.equal(out["faith_logit"], torch.zeros(6))
