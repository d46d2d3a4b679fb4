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
    from gradfaith_tui.store.cache import CacheReader

    cfg = TrainConfig(epochs=1, batch_size=16, lr=1e-3, img_size=32)
    (out,) = fit_all(phantoms, tmp_path / "ck", [spec_for("resnet10t")], [0], cfg)
    assert (out / "model.safetensors").is_file()
    precompute(phantoms, trained, tmp_path / "cache", names=["resnet10t"], cam=CamSettings(sanity_cases=0),
               warn=lambda m: None, with_timing=False)
    r = CacheReader(tmp_path / "cache")
    faith = [v for (v,) in r.con.execute("SELECT value FROM metrics WHERE name='faith'")]
    assert len(faith) == 2 * r.n_cases and all(-1 <= v <= 1 for v in faith)
    r.close()
