import json

import numpy as np
import pytest
import torch

from gradfaith_tui.config import PAPER_ARCHS, ModelSpec, spec_for
from gradfaith_tui.data.dataset import discover
from gradfaith_tui.data.prepared import load_split, prepare
from gradfaith_tui.errors import CheckpointError, GradfaithError
from gradfaith_tui.models.factory import build, load_checkpoint, read_card
from gradfaith_tui.models.train import TrainConfig, train


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(GradfaithError, match="unknown model 'resnet9000'"):
        build(ModelSpec("x", "resnet9000", "x"), 32)


def test_missing_pretrained_file_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="--pretrained-file"):
        build(spec_for("resnet10t"), 32, tmp_path / "none.safetensors")


@pytest.mark.parametrize("arch", PAPER_ARCHS)
def test_paper_architectures_take_a_training_step_on_tiny_input(arch):
    torch.manual_seed(0)
    model = build(spec_for(arch), 32)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.rand(2, 1, 32, 32), torch.tensor([0, 2])
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)


def _arrays(phantoms):
    ds = discover(phantoms)
    prep = prepare(ds)
    return prep, load_split(prep.samples(ds, "train"), 32), load_split(prep.samples(ds, "val"), 32)


def test_checkpoint_card_and_resume(phantoms, tmp_path):
    prep, tr, va = _arrays(phantoms)
    prov = {"data_fingerprint": prep.fingerprint, "split_hash": prep.split_hash, "split_seed": 0}
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-3, img_size=32)
    out = tmp_path / "resnet10t" / "seed0"
    seen = []
    # Interrupt after the first epoch, as a killed run would be.
    class Stop(Exception):
        pass

    def stop_after_first(epoch, row):
        seen.append(epoch)
        raise Stop

    with pytest.raises(Stop):
        train(spec_for("resnet10t"), 0, tr, va, cfg, out, prov, on_epoch=stop_after_first)
    assert read_card(out)["epochs_done"] == 1
    resumed = []
    card = train(spec_for("resnet10t"), 0, tr, va, cfg, out, prov, on_epoch=lambda e, r: resumed.append(e))
    assert resumed == [2], "the finished epoch is not trained again"
    assert card["epochs_done"] == 2 and card["arch"] == "resnet10t" and card["class_names"][1] == "Benign"
    assert len(json.loads((out / "train_state.json").read_text())["history"]) == 2
    assert (out / "history.csv").read_text().count("\n") == 3
    model, _ = load_checkpoint(out, prep.fingerprint)
    assert model(torch.rand(1, 1, 32, 32)).shape == (1, 3)


def test_fingerprint_guard(trained):
    ckpt = trained / "resnet10t" / "seed0"
    with pytest.raises(CheckpointError, match="trained on other data"):
        load_checkpoint(ckpt, "0000000000000000")
    model, card = load_checkpoint(ckpt, "0000000000000000", force=True)
    assert card["name"] == "resnet10t"


def test_weights_that_do_not_fit_name_the_layers(trained, tmp_path):
    from safetensors.torch import save_file

    bad = tmp_path / "bad"
    bad.mkdir()
    card = read_card(trained / "resnet10t" / "seed0")
    (bad / "card.json").write_text(json.dumps(card))
    save_file({"fc.weight": torch.zeros(5, 5)}, str(bad / "model.safetensors"))
    with pytest.raises(CheckpointError, match="weights do not fit.*missing.*wrong shape: fc.weight"):
        load_checkpoint(bad)
