"""`import` with weights files as users have them: wrappers and prefixes, heads of other sizes, several
classifier layers, files named for another format, and a re-import at another input size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradfaith_tui.config import ModelSpec
from gradfaith_tui.errors import CheckpointError, GradfaithError
from gradfaith_tui.models.factory import load_checkpoint
from gradfaith_tui.models.importer import import_model

OURS = ["Normal", "Benign", "Malignant"]
REORDERED = ["Malignant", "Benign", "Normal"]


def _resnet(num_classes=3):
    import timm

    torch.manual_seed(0)
    return timm.create_model("resnet10t", num_classes=num_classes).eval()


def _import(path, phantoms, tmp_path, classes=OURS, arch="resnet10t", size=32, kwargs=None, **kw):
    return import_model(path, ModelSpec("mine", arch, "resnet50", kwargs or {}), size, classes, phantoms,
                        tmp_path / "ck", **kw)


@pytest.mark.parametrize("rows", [2, 4, 10])
def test_a_head_of_another_size_is_refused_whatever_the_class_order(phantoms, tmp_path, rows):
    torch.save(_resnet(rows).state_dict(), tmp_path / "w.pth")
    for classes in (OURS, REORDERED):  # rows were reordered before the shape check, and 10 became 3
        with pytest.raises(CheckpointError, match=r"weights do not fit ResNet \(wrong shape: fc.bias, fc.weight\)"):
            _import(tmp_path / "w.pth", phantoms, tmp_path, classes)
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("wrap", ["module.", "_orig_mod.", "model.module.", "module._orig_mod."])
def test_prefixes_of_ddp_compile_and_wrappers_are_taken_off_in_safetensors_files_too(phantoms, tmp_path, wrap):
    from safetensors.torch import save_file

    net = _resnet()
    save_file({wrap + k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "w.safetensors"))
    model, _ = load_checkpoint(_import(tmp_path / "w.safetensors", phantoms, tmp_path))
    assert torch.equal(model.net.fc.weight, net.fc.weight)


def test_a_lightning_checkpoint_with_a_loss_weight_and_no_batchnorm_counters_imports(phantoms, tmp_path):
    net = _resnet()
    state = {"model." + k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"state_dict": {**state, "criterion.weight": torch.ones(3)}, "epoch": 3}, tmp_path / "w.ckpt")
    model, _ = load_checkpoint(_import(tmp_path / "w.ckpt", phantoms, tmp_path))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.net(x), net(x), atol=1e-6)


def test_a_file_is_read_by_its_content_not_its_name(phantoms, tmp_path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in _resnet().state_dict().items()}, str(tmp_path / "w.pth"))
    _import(tmp_path / "w.pth", phantoms, tmp_path)  # safetensors under a .pth name
    (tmp_path / "scan.pth").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))  # a JPEG renamed
    with pytest.raises(CheckpointError, match=r"scan.pth: not a weights file \(neither safetensors nor a PyTorch file\)$"):
        _import(tmp_path / "scan.pth", phantoms, tmp_path, force=True)
    (tmp_path / "folder.pth").mkdir()
    with pytest.raises(CheckpointError, match="folder.pth: not a regular file"):
        _import(tmp_path / "folder.pth", phantoms, tmp_path, force=True)
    torch.save({"net_weights": {"a": 1}}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match=r"odd.pth: not a state dict of tensors \(found: net_weights\)"):
        _import(tmp_path / "odd.pth", phantoms, tmp_path, force=True)


def test_every_classifier_of_a_distilled_vit_is_reordered(phantoms, tmp_path):
    import timm

    torch.manual_seed(0)
    kw = {"depth": 1}
    src = timm.create_model("deit_tiny_distilled_patch16_224", num_classes=3, img_size=32, **kw).eval()
    torch.save(src.state_dict(), tmp_path / "deit.pth")
    out = _import(tmp_path / "deit.pth", phantoms, tmp_path, REORDERED, arch="deit_tiny_distilled_patch16_224",
                  kwargs=kw)
    model, _ = load_checkpoint(out)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        want = src(x)[:, [2, 1, 0]]  # the source's Malignant, Benign, Normal as our Normal, Benign, Malignant
        assert torch.allclose(model.net(x), want, atol=1e-5)


def test_position_embeddings_are_sized_for_any_transformer_that_takes_img_size(phantoms, tmp_path):
    import timm

    src = timm.create_model("pit_ti_224", num_classes=3, img_size=64)
    torch.save(src.state_dict(), tmp_path / "pit.pth")
    model, card = load_checkpoint(_import(tmp_path / "pit.pth", phantoms, tmp_path, arch="pit_ti_224", size=64))
    assert card["img_size"] == 64 and torch.equal(model.net.pos_embed, src.pos_embed)


def test_arch_names_and_class_lists_timm_or_we_cannot_use_are_one_line(phantoms, tmp_path):
    torch.save(_resnet().state_dict(), tmp_path / "w.pth")
    with pytest.raises(GradfaithError, match="'resnet10t.nosuch': RuntimeError: Invalid pretrained tag"):
        _import(tmp_path / "w.pth", phantoms, tmp_path, arch="resnet10t.nosuch")


def test_one_name_holds_one_architecture_at_one_size(phantoms, tmp_path):
    torch.save(_resnet().state_dict(), tmp_path / "w.pth")
    _import(tmp_path / "w.pth", phantoms, tmp_path)
    with pytest.raises(CheckpointError, match="mine/seed0: --name mine holds resnet10t at 32 px; its seeds must be"):
        _import(tmp_path / "w.pth", phantoms, tmp_path, size=48, seed=1)
    _import(tmp_path / "w.pth", phantoms, tmp_path, size=48, force=True)  # the same seed again: a replacement


def test_a_reimport_at_another_size_is_recomputed_not_shown_as_current(phantoms, tmp_path):
    from gradfaith_tui.config import CamSettings
    from gradfaith_tui.freshness import cache_is_current
    from gradfaith_tui.pipeline import precompute
    from gradfaith_tui.store.reader import CacheReader

    torch.save(_resnet().state_dict(), tmp_path / "w.pth")
    _import(tmp_path / "w.pth", phantoms, tmp_path, size=64)
    cam = CamSettings(sanity_cases=0)
    cache = tmp_path / "cache"

    def run():
        precompute(phantoms, tmp_path / "ck", cache, cam=cam, warn=lambda m: None, with_timing=False)
        r = CacheReader(cache)
        col = r.columns[0]
        out = (r.heatmap(col.expl_id, 0).shape, r.con.execute("SELECT p0 FROM predictions ORDER BY idx").fetchall())
        r.close()
        return out

    big_shape, big_probs = run()
    _import(tmp_path / "w.pth", phantoms, tmp_path, size=32, force=True)  # the same file, another input size
    assert not cache_is_current(phantoms, tmp_path / "ck", cache, ["mine"], [0], 0, cam)
    small_shape, small_probs = run()
    assert small_shape != big_shape and not np.allclose(small_probs, big_probs)


def test_class_names_as_the_dataset_folders_spell_them():
    from gradfaith_tui.models.importer import class_order

    assert class_order(["Normal cases", "Bengin cases", " Malignant case"]) == [0, 1, 2]
    assert class_order(["malignant", "BENIGN", "normal"]) == [2, 1, 0]
