"""Shared fixtures: tiny phantoms, a tiny trained run and its cache, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradfaith_tui.data.phantom import PhantomConfig, write_dataset

TINY_PHANTOMS = PhantomConfig(n_patients=15, slices_per_patient=3, size=64, balance=(1, 1, 1), seed=3,
                              shortcut_class=2, shortcut_rate=0.5)
TINY_MODELS = ["resnet10t", "vit-tiny-p8"]


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phantoms")
    write_dataset(TINY_PHANTOMS, root)
    return root


@pytest.fixture(scope="session")
def trained(phantoms, tmp_path_factory) -> Path:
    """Two small architectures x two seeds, one epoch at 32 px: enough to exercise every stage."""
    from gradfaith_tui.config import spec_for
    from gradfaith_tui.models.fit import fit_all
    from gradfaith_tui.models.train import TrainConfig

    ckpt = tmp_path_factory.mktemp("checkpoints")
    cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-3, img_size=32)
    fit_all(phantoms, ckpt, [spec_for(n) for n in TINY_MODELS], [0, 1], cfg)
    return ckpt


@pytest.fixture(scope="session")
def cache(phantoms, trained, tmp_path_factory) -> Path:
    from gradfaith_tui.pipeline import precompute

    out = tmp_path_factory.mktemp("cache")
    precompute(phantoms, trained, out, warn=lambda m: None, with_timing=False)
    return out
