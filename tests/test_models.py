import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from gradfaith_tui.config import PAPER_ARCHS, ModelSpec, spec_for
from gradfaith_tui.data.dataset import discover
from gradfaith_tui.data.prepared import load_split, prepare
from gradfaith_tui.errors import CheckpointError, GradfaithError
from gradfaith_tui.models.factory import build, load_checkpoint, read_card
from gradfaith_tui.models.train import CudaTuning, TrainConfig, train


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(GradfaithError, match="unknown model 'resnet9000'"):
        build(ModelSpec("x", "resnet9000", "x"), 32)


def test_missing_pretrained_file_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="--pretrained-file"):
        build(spec_for("resnet10t"), 32, tmp_path / "none.safetensors")


def test_pretrained_file_that_does_not_fit_or_is_not_weights_is_a_clear_error(tmp_path):
    import timm

    other = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), other)
    with pytest.raises(CheckpointError, match=r"resnet18.pth: not usable as resnet10t weights .*size mismatch for \S+"):
        build(spec_for("resnet10t"), 32, other)
    junk = tmp_path / "junk.pt"
    junk.write_text("not a weights file")
    with pytest.raises(CheckpointError, match=r"--pretrained-file: \S+junk.pt: not a weights file \(neither "
                                              r"safetensors nor a PyTorch file\)$"):  # as `import` says it
        build(spec_for("resnet10t"), 32, junk)


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


class _Stop(Exception):
    pass


def _stopped_after_one_of_two_epochs(phantoms, tmp_path):
    """A run of two epochs stopped after its first: its resume files, state and best checkpoint on disk."""
    prep, tr, va = _arrays(phantoms)
    prov = {"data_fingerprint": prep.fingerprint, "split_hash": prep.split_hash, "split_seed": 0}
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-3, img_size=32)
    out = tmp_path / "resnet10t" / "seed0"
    with pytest.raises(_Stop):
        train(spec_for("resnet10t"), 0, tr, va, cfg, out, prov, on_epoch=lambda e, r: (_ for _ in ()).throw(_Stop()))
    return tr, va, cfg, out, prov


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
    from gradfaith_tui.models.card import file_hash

    assert card["weights_sha1"] == file_hash(out / "model.safetensors")  # the best epoch's, taken while writing
    model, _ = load_checkpoint(out, prep.fingerprint)
    assert model(torch.rand(1, 1, 32, 32)).shape == (1, 3)


@pytest.mark.parametrize("damage", ["state-truncated", "state-list", "state-epoch-text", "state-history-int",
                                    "state-epoch-past-the-run", "state-empty-rows", "state-best-text", "optim-empty",
                                    "optim-garbage", "optim-other-dict"])
def test_damaged_resume_files_stop_with_one_line_naming_them_and_keep_the_epochs(phantoms, tmp_path, damage):
    import shutil

    from gradfaith_tui.errors import TrainingError

    tr, va, cfg, out, prov = _stopped_after_one_of_two_epochs(phantoms, tmp_path)
    state_file = out / "train_state.json"
    optim_file = out / f"optim{json.loads(state_file.read_text())['slot']}.pt"
    target, content = {"state-truncated": (state_file, state_file.read_bytes()[:50]),
                       "state-list": (state_file, b"[]"),
                       "state-epoch-text": (state_file, json.dumps({**json.loads(state_file.read_text()), "epoch": "x"}).encode()),
                       # a crash mid-epoch once, skipped training and deleted the saved epochs the other
                       "state-history-int": (state_file, json.dumps({**json.loads(state_file.read_text()), "history": 5}).encode()),
                       "state-epoch-past-the-run": (state_file, json.dumps({**json.loads(state_file.read_text()), "epoch": 99}).encode()),
                       "state-empty-rows": (state_file, json.dumps({**json.loads(state_file.read_text()), "history": [{}]}).encode()),
                       "state-best-text": (state_file, json.dumps({**json.loads(state_file.read_text()),
                                                                   "best": {"val_acc": "x", "val_loss": None}}).encode()),
                       "optim-empty": (optim_file, b""), "optim-garbage": (optim_file, b"garbage"),
                       "optim-other-dict": (optim_file, None)}[damage]
    if content is None:
        torch.save({"x": 1}, target)
    else:
        target.write_bytes(content)
    kept = tmp_path / "kept"
    shutil.copytree(out, kept)
    with pytest.raises(TrainingError, match=rf"^{re.escape(str(target))}: unreadable .*pass --restart") as err:
        train(spec_for("resnet10t"), 0, tr, va, cfg, out, prov)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in kept.iterdir())  # nothing dropped
    assert target.read_bytes() == (kept / target.name).read_bytes()
    card = train(spec_for("resnet10t"), 0, tr, va, cfg, out, prov, restart=True)  # asked: trained anew
    assert card["epochs_done"] == 2


@pytest.mark.parametrize("background", [False, True], ids=["inline", "background"])
def test_a_run_killed_mid_write_resumes_from_the_last_whole_epoch(phantoms, tmp_path, monkeypatch, background):
    import gradfaith_tui.models.train as train_mod
    from gradfaith_tui.models.epoch_saver import EpochSaver
    from safetensors import safe_open

    # CUDA runs write in the background; force either way here.
    forced = background
    monkeypatch.setattr(train_mod, "EpochSaver", lambda background: EpochSaver(background=forced))

    prep, tr, va = _arrays(phantoms)
    prov = {"data_fingerprint": prep.fingerprint, "split_hash": prep.split_hash, "split_seed": 0}
    cfg = TrainConfig(epochs=3, batch_size=16, lr=1e-3, img_size=32)
    out = tmp_path / "resnet10t" / "seed0"
    real = train_mod._write_epoch

    def dies_in_epoch_two(out_, slot, weights, optim, state, best_card):
        if state["epoch"] < 2:
            return real(out_, slot, weights, optim, state, best_card)
        train_mod.save_weights(weights, out_ / f"last{slot}.safetensors")  # half of epoch 2's files, no commit
        raise OSError("disk full")

    monkeypatch.setattr(train_mod, "_write_epoch", dies_in_epoch_two)
    with pytest.raises(OSError, match="disk full"):  # a failed write stops the run, in the training thread
        train(spec_for("resnet10t"), 0, tr, va, cfg, out, prov)
    state = json.loads((out / "train_state.json").read_text())
    assert state["epoch"] == 1 and state["slot"] == "-0"
    with safe_open(str(out / "last-0.safetensors"), "pt") as f:
        assert f.metadata()["epoch"] == "1"  # the slot the state points at is epoch 1's, whole
    monkeypatch.setattr(train_mod, "_write_epoch", real)
    resumed = []
    card = train(spec_for("resnet10t"), 0, tr, va, cfg, out, prov, on_epoch=lambda e, r: resumed.append(e))
    assert resumed == [2, 3] and card["epochs_done"] == 3
    assert [r["epoch"] for r in json.loads((out / "train_state.json").read_text())["history"]] == [1, 2, 3]
    assert not list(out.glob("last*")) and not list(out.glob("optim*")), "a finished run keeps no resume files"
    load_checkpoint(out, prep.fingerprint)


def test_a_run_killed_after_its_last_card_before_its_state_commit_is_resumed_not_called_finished(
        phantoms, tmp_path, monkeypatch):
    import gradfaith_tui.models.train as train_mod
    from gradfaith_tui.models.resume import is_complete, tidy_finished

    prep, tr, va = _arrays(phantoms)
    prov = {"data_fingerprint": prep.fingerprint, "split_hash": prep.split_hash, "split_seed": 0}
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-3, img_size=32)
    out = tmp_path / "resnet10t" / "seed0"
    real = train_mod.replace_atomically

    def dies_at_the_last_commit(path, write):
        if path.name == "train_state.json" and train_mod.read_card(out)["epochs_done"] == 2:
            raise KeyboardInterrupt  # the card says done; the state still points at epoch 1
        return real(path, write)

    monkeypatch.setattr(train_mod, "replace_atomically", dies_at_the_last_commit)
    with pytest.raises(KeyboardInterrupt):
        train(spec_for("resnet10t"), 0, tr, va, cfg, out, prov)
    monkeypatch.setattr(train_mod, "replace_atomically", real)
    assert read_card(out)["epochs_done"] == 2 and (out / "history.csv").read_text().count("\n") == 3
    assert not is_complete(out, 2, prep.fingerprint), "its resume files would stay forever"
    resumed = []
    train(spec_for("resnet10t"), 0, tr, va, cfg, out, prov, on_epoch=lambda e, r: resumed.append(e))
    assert resumed == [2] and is_complete(out, 2, prep.fingerprint)
    assert not list(out.glob("last*")) and not list(out.glob("optim*"))
    (out / "last-0.safetensors").write_bytes(b"x")  # as a kill while removing them leaves
    (out / ".tmpab12cd").write_bytes(b"x")  # safetensors' temporary file from a killed write
    tidy_finished(out)
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "history.csv", "model.safetensors", "train_state.json"]


def test_training_steps_take_full_batches_and_validation_padding_changes_nothing(phantoms, tmp_path):
    from gradfaith_tui.models.train import DeviceSplit, _validate

    prep, tr, va = _arrays(phantoms)
    prov = {"data_fingerprint": prep.fingerprint, "split_hash": prep.split_hash, "split_seed": 0}
    steps = []
    batch = 8
    assert len(tr.labels) % batch, "the fixture leaves a short last batch to drop"
    train(spec_for("resnet10t"), 0, tr, va, TrainConfig(epochs=1, batch_size=batch, lr=1e-3, img_size=32),
          tmp_path / "r", prov, on_batch=lambda e, b, n, loss: steps.append(n))
    assert set(steps) == {len(tr.labels) // batch} and len(steps) == len(tr.labels) // batch

    # Padding the short last validation batch (what CUDA runs do, for one kernel shape) gives the same numbers.
    model = build(spec_for("resnet10t"), 32).eval()
    val = DeviceSplit(va, torch.device("cpu"))
    assert len(va.labels) % batch
    plain, padded = _validate(model, val, batch, pad=False), _validate(model, val, batch, pad=True)
    assert padded["val_acc"] == plain["val_acc"] and padded["val_loss"] == pytest.approx(plain["val_loss"], rel=1e-5)


def test_host_copies_are_taken_at_the_epoch_end_not_when_written():
    from gradfaith_tui.models.epoch_saver import HostCopy

    w = torch.ones(3)
    state = {"state": {0: {"exp_avg": w, "step": torch.tensor(4.0)}}, "param_groups": [{"lr": 0.1, "params": [0]}]}
    copy = HostCopy()
    snap = copy(state)
    w.add_(1)  # training goes on
    assert torch.equal(snap["state"][0]["exp_avg"], torch.ones(3)) and snap["param_groups"][0]["lr"] == 0.1
    again = copy(state)
    assert again["state"][0]["exp_avg"].data_ptr() == snap["state"][0]["exp_avg"].data_ptr(), "buffers are reused"
    assert torch.equal(again["state"][0]["exp_avg"], torch.full((3,), 2.0))


def test_a_background_snapshot_keeps_weights_and_optimiser_apart():
    from gradfaith_tui.models.epoch_saver import EpochSaver

    # AdamW's moments have the shapes of the weights they follow: a buffer shared between the two trees
    # would hand the writer a moment in place of a weight.
    weights = {"conv.weight": torch.full((4, 3), 1.0), "bn.running_var": torch.full((4,), 2.0)}
    optim = {"state": {0: {"exp_avg": torch.full((4, 3), -5.0), "exp_avg_sq": torch.full((4,), -7.0)}}}
    saver = EpochSaver(background=True)
    try:
        for epoch in range(2):  # the second snapshot reuses the first one's buffers
            w, o = saver.snapshot(weights, optim)
            assert torch.equal(w["conv.weight"], weights["conv.weight"])
            assert torch.equal(w["bn.running_var"], weights["bn.running_var"])
            assert torch.equal(o["state"][0]["exp_avg"], optim["state"][0]["exp_avg"])
            assert torch.equal(o["state"][0]["exp_avg_sq"], optim["state"][0]["exp_avg_sq"])
            weights["conv.weight"].add_(1)
    finally:
        saver.close()


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


@pytest.mark.parametrize("key,value", [("fc.weight", float("nan")), ("bn1.running_var", -0.5)],
                         ids=["nan", "negative-variance"])
def test_broken_weights_are_refused_on_load_naming_the_tensor(trained, tmp_path, key, value):
    import shutil

    from safetensors.torch import load_file, save_file

    bad = Path(shutil.copytree(trained / "resnet10t" / "seed0", tmp_path / "bad"))
    state = load_file(str(bad / "model.safetensors"))
    state[key][0] = value
    save_file(state, str(bad / "model.safetensors"))
    with pytest.raises(CheckpointError, match=f"NaN, inf or a negative running variance \\({key}\\)"):
        load_checkpoint(bad)


def test_a_diverged_loss_stops_training_and_keeps_the_finished_epochs(phantoms, tmp_path, monkeypatch):
    import gradfaith_tui.models.train as train_mod
    from gradfaith_tui.errors import TrainingError

    prep, tr, va = _arrays(phantoms)
    prov = {"data_fingerprint": prep.fingerprint, "split_hash": prep.split_hash, "split_seed": 0}
    real = train_mod._train_epoch

    def nan_in_epoch_two(*args):
        row = real(*args)
        return {**row, "train_loss": float("nan")} if row["epoch"] == 2 else row

    monkeypatch.setattr(train_mod, "_train_epoch", nan_in_epoch_two)
    out = tmp_path / "resnet10t" / "seed0"
    with pytest.raises(TrainingError, match="diverged in epoch 2.*; epoch 1 is kept; .*lower --lr"):
        train(spec_for("resnet10t"), 0, tr, va, TrainConfig(epochs=3, batch_size=16, lr=1e-3, img_size=32), out, prov)
    assert json.loads((out / "train_state.json").read_text())["epoch"] == 1
    assert read_card(out)["epochs_done"] == 1
    monkeypatch.setattr(train_mod, "_train_epoch", lambda *args: {**real(*args), "val_loss": float("inf")})
    with pytest.raises(TrainingError, match=r"diverged in epoch 1 .*; no finished epoch is kept; try a lower --lr"):
        train(spec_for("resnet10t"), 0, tr, va, TrainConfig(epochs=1, batch_size=16, lr=1e-3, img_size=32),
              tmp_path / "first", prov)


def test_import_checks_fit_reorders_the_head_and_writes_a_card(phantoms, tmp_path):
    import timm

    from gradfaith_tui.models.importer import import_model

    net = timm.create_model("resnet10t", num_classes=3)
    torch.save({"state_dict": {"module." + k: v for k, v in net.state_dict().items()}}, tmp_path / "w.pth")
    spec = ModelSpec("mine", "resnet10t", "resnet50")
    out = import_model(tmp_path / "w.pth", spec, 32, ["Malignant", "Normal", "Bengin"], phantoms, tmp_path / "ck")
    model, card = load_checkpoint(out, discover(phantoms).fingerprint())
    assert torch.equal(model.net.fc.weight[2], net.fc.weight[0])  # Malignant row moved to our index 2
    assert torch.equal(model.net.fc.weight[1], net.fc.weight[2])  # Bengin -> Benign
    assert card["class_names"] == ["Normal", "Benign", "Malignant"] and card["imported_from"].endswith("w.pth")
    with pytest.raises(CheckpointError, match="weights do not fit.*wrong shape"):
        import_model(tmp_path / "w.pth", ModelSpec("x", "resnet18", "resnet50"), 32,
                     ["Normal", "Benign", "Malignant"], phantoms, tmp_path / "ck2")
    with pytest.raises(CheckpointError, match="--classes"):
        import_model(tmp_path / "w.pth", spec, 32, ["Normal", "Cyst", "Malignant"], phantoms, tmp_path / "ck3")
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=3, img_size=64, depth=1)
    torch.save(vit.state_dict(), tmp_path / "vit.pth")  # trained at 64 px, imported as if at 32
    with pytest.raises(CheckpointError, match="wrong shape: pos_embed.*check --img-size"):
        import_model(tmp_path / "vit.pth", ModelSpec("v", "vit_tiny_patch16_224", "vit_base_patch16_224", {"depth": 1}),
                     32, ["Normal", "Benign", "Malignant"], phantoms, tmp_path / "ck4")


def test_pickled_objects_are_refused(tmp_path):
    from gradfaith_tui.models.weights_file import read_state

    import fractions

    torch.save({"x": fractions.Fraction(1, 3)}, tmp_path / "evil.pt")  # any non-tensor object needs unpickling
    with pytest.raises(CheckpointError, match="unreadable weights"):
        read_state(tmp_path / "evil.pt")


def test_two_process_ddp_training_with_gloo(phantoms, tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                          "-m", "gradfaith_tui", "train", "--data", str(phantoms), "--checkpoints", str(tmp_path),
                          "--models", "resnet10t", "--seeds", "0", "--epochs", "1", "--img-size", "32", "--batch-size", "8"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    card = read_card(tmp_path / "resnet10t" / "seed0")
    assert card["world_size"] == 2 and card["epochs_done"] == 1
    model, _ = load_checkpoint(tmp_path / "resnet10t" / "seed0")
    assert all(torch.isfinite(p).all() for p in model.parameters())


PEER_SCRIPT = """
import os, sys
import torch.distributed as dist
from gradfaith_tui.errors import PeerStopped
from gradfaith_tui.models.distributed import from_env
d = from_env("cpu")
if d.rank == 0:
    sys.exit(2)  # rank 0 stops on a user mistake before the barrier, as precompute's model checks can
try:
    d.barrier()
except PeerStopped as exc:
    print(exc)
    sys.exit(exc.exit_code)
sys.exit(9)
"""


def test_a_rank_whose_peer_stopped_says_so_in_one_line(tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen([sys.executable, "-c", PEER_SCRIPT], text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE,
                              env={**os.environ, "WORLD_SIZE": "2", "RANK": str(r), "LOCAL_RANK": str(r),
                                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}) for r in (0, 1)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert procs[0].returncode == 2
    assert procs[1].returncode == 1, outs[1][1][-2000:]
    assert outs[1][0].strip() == "rank 1: stopped because another rank did (its error is above)"


def test_local_imagenet_weights_load_through_timm(tmp_path):
    """--pretrained-file: timm reads a local file (1,000-class head dropped), nothing is fetched."""
    import timm
    from safetensors.torch import save_file

    src = timm.create_model("resnet10t")  # a stand-in for downloaded ImageNet weights
    save_file(src.state_dict(), str(tmp_path / "imagenet.safetensors"))
    model = build(spec_for("resnet10t"), 32, tmp_path / "imagenet.safetensors")
    assert torch.equal(model.net.conv1[0].weight, src.conv1[0].weight)
    assert model.net.fc.out_features == 3
    # timm picks its reader by the name: a safetensors file named otherwise (or a torch file named .safetensors)
    # is read by its content, as `import` reads files
    (tmp_path / "imagenet.weights").write_bytes((tmp_path / "imagenet.safetensors").read_bytes())
    torch.save(src.state_dict(), tmp_path / "torch.safetensors")
    for name in ("imagenet.weights", "torch.safetensors"):
        model = build(spec_for("resnet10t"), 32, tmp_path / name)
        assert torch.equal(model.net.conv1[0].weight, src.conv1[0].weight), name


def test_weighted_loss_weights_rare_classes_up():
    from gradfaith_tui.models.train import class_weights

    w = class_weights(np.array([0] * 38 + [1] * 11 + [2] * 51))
    assert w[1] > w[0] > w[2]
    assert float((w * torch.tensor([38, 11, 51.0])).sum()) == pytest.approx(100.0)


def _record_on_cpu(monkeypatch, fake=None):
    """Recording is tried on the CPU: with the real make_graphed_callables (it fails there: no CUDA) or a
    stand-in that replays the plain forward and counts."""
    from gradfaith_tui.models import precision

    monkeypatch.setattr(precision, "GRAPH_DEVICES", ("cpu",))
    if fake is not None:
        monkeypatch.setattr(torch.cuda, "make_graphed_callables", fake)


def test_graphed_training_records_one_shape_and_leaves_the_model_itself_plain(monkeypatch):
    from gradfaith_tui.models.step_graph import GraphedTraining

    recorded = []

    def fake(module, args, **kw):  # replaces the given module's forward, as the real one does
        recorded.append(tuple(args[0].shape))
        plain = module.forward
        module.forward = lambda x: plain(x) * 1
        return module

    _record_on_cpu(monkeypatch, fake)
    model = build(spec_for("resnet10t"), 32).train()
    step = GraphedTraining(model)
    x = torch.rand(4, 1, 32, 32)
    step(x).sum().backward()
    step(x)
    step(torch.rand(2, 1, 32, 32))  # another shape: the plain forward, no second recording
    with torch.no_grad():
        step(x)  # no autograd (precise BN, validation): never the graph
    assert recorded == [(4, 1, 32, 32)] and step.recorded and step.broken is None
    assert model.forward.__func__ is type(model).forward  # validation and precise BN call the model, not a graph
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_training_where_graphs_cannot_be_recorded_runs_plain_steps_and_says_so(monkeypatch, phantoms, tmp_path):
    _record_on_cpu(monkeypatch)  # the real make_graphed_callables, on a CPU: it cannot record
    prep, tr, va = _arrays(phantoms)
    prov = {"data_fingerprint": prep.fingerprint, "split_hash": prep.split_hash, "split_seed": 0}
    cfg = TrainConfig(epochs=1, batch_size=16, lr=1e-3, img_size=32)
    rows = []
    train(spec_for("resnet10t"), 0, tr, va, cfg, tmp_path / "g", prov, on_epoch=lambda e, r: rows.append(r))
    plain = []
    train(spec_for("resnet10t"), 0, tr, va, cfg, tmp_path / "p", prov, on_epoch=lambda e, r: plain.append(r),
          tuning=CudaTuning(graphs=False))
    assert rows[0]["steps_via"].startswith("plain steps, no graph: ") and plain[0]["steps_via"] == "eager"
    for k in ("train_loss", "val_loss", "val_acc"):  # the failed recording changed nothing the run computes
        assert rows[0][k] == pytest.approx(plain[0][k], rel=1e-5)
    assert {"steps_seconds", "bn_seconds", "val_seconds", "save_seconds"} <= set(rows[0])


def test_precise_bn_averages_an_even_sample_as_a_cumulative_pass_would():
    from types import SimpleNamespace

    from gradfaith_tui.models.train import DeviceSplit, recalibrate_bn

    rng = np.random.default_rng(0)
    n = 40
    images = rng.integers(0, 256, (n, 16, 16), dtype=np.uint8)
    split = DeviceSplit(SimpleNamespace(images=images, labels=np.zeros(n, np.int64)), torch.device("cpu"))
    batches = [x for x, _ in split.spread_batches(8, 24)]
    assert [len(x) for x in batches] == [8, 8, 8]  # 24 of 40, full batches
    rows = torch.cat(batches).flatten(1)
    picked = [int(np.flatnonzero((torch.from_numpy(images).flatten(1).float() / 255 == r).all(1))[0]) for r in rows]
    assert picked == sorted(set(picked)) and picked[0] == 0 and picked[-1] == n - 1  # spread, no repeats
    assert len(list(split.spread_batches(8, 1000))) == 5  # the whole split where it is smaller

    torch.manual_seed(0)
    model = build(spec_for("resnet10t"), 16)
    reference = build(spec_for("resnet10t"), 16)
    reference.load_state_dict(model.state_dict())
    recalibrate_bn(model, split, 8, limit=24)
    bns = [m for m in reference.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:  # what precise BN used to do: momentum None over the same batches
        m.reset_running_stats()
        m.momentum = None
    reference.train()
    with torch.no_grad():
        for x in batches:
            reference(x)
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        if "running" in name:
            torch.testing.assert_close(a, b, msg=name)
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))


def test_training_out_of_memory_names_the_batch_size(phantoms, tmp_path, monkeypatch):
    from gradfaith_tui.errors import TrainingError
    from gradfaith_tui.models import fit
    from gradfaith_tui.models.train import TrainConfig

    def too_big(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(fit, "train", too_big)
    with pytest.raises(TrainingError, match=r"--batch-size 64: resnet10t/seed0 ran out of memory on cpu"):
        fit.fit_all(phantoms, tmp_path / "ck", [spec_for("resnet10t")], [0], TrainConfig(epochs=1, batch_size=64, lr=1e-3, img_size=32))


def test_a_rerun_with_other_settings_stops_naming_them_and_restart_starts_over(phantoms, tmp_path):
    from dataclasses import replace

    from gradfaith_tui.errors import TrainingError
    from gradfaith_tui.models.fit import FitEvents, fit_all
    from gradfaith_tui.models.resume import resume_point

    prep, tr, va = _arrays(phantoms)
    prov = {"data_fingerprint": prep.fingerprint, "split_hash": prep.split_hash, "split_seed": 0}
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-3, img_size=32)
    out = tmp_path / "ck" / "resnet10t" / "seed0"

    class Stop(Exception):
        pass

    def stop(epoch, row):
        raise Stop

    with pytest.raises(Stop):  # killed after epoch 1 of 2
        train(spec_for("resnet10t"), 0, tr, va, cfg, out, prov, on_epoch=stop)
    for other, said in [(replace(cfg, epochs=3), r"trained with --epochs 2, now 3 \(the one-cycle learning-rate"),
                        (replace(cfg, img_size=48), "trained with --img-size 32, now 48; rerun with the same settings"),
                        (replace(cfg, lr=1e-2, weighted_loss=True),
                         "trained with --lr 0.001 and --no-weighted-loss, now 0.01 and --weighted-loss")]:
        with pytest.raises(TrainingError, match=f"seed0: finished epochs were {said}.*pass --restart"):
            train(spec_for("resnet10t"), 0, tr, va, other, out, prov)
    with pytest.raises(TrainingError, match="trained on other data"):
        resume_point(out, cfg, {**prov, "data_fingerprint": "0" * 16})
    assert (out / "history.csv").read_text().count("\n") == 2, "the finished epoch is kept"
    # The device and --compile change where and how fast steps run, not the run: they resume it.
    assert resume_point(out, replace(cfg, device="cuda:0", compile=True), prov)["epoch"] == 1

    epochs = []
    card = train(spec_for("resnet10t"), 0, tr, va, replace(cfg, epochs=1), out, prov, restart=True,
                 on_epoch=lambda e, r: epochs.append(e))
    assert epochs == [1] and card["epochs"] == card["epochs_done"] == 1
    assert [r["epoch"] for r in json.loads((out / "train_state.json").read_text())["history"]] == [1]
    # A finished run cannot grow: its schedule ended with it.
    with pytest.raises(TrainingError, match="already trained with --epochs 1, now 2; a finished run cannot be extended"):
        resume_point(out, cfg, prov)
    # Nor are weights whose card was damaged or lost trained over unasked.
    card_text = (out / "card.json").read_text()
    (out / "card.json").write_text("[1, 2, 3]")
    with pytest.raises(TrainingError, match="holds a model with a card that cannot be read .* pass --restart"):
        resume_point(out, replace(cfg, epochs=1), prov)
    (out / "card.json").unlink()
    with pytest.raises(TrainingError, match="holds a model with model.safetensors without its card.json; restore"):
        resume_point(out, replace(cfg, epochs=1), prov)
    (out / "card.json").write_text(card_text)
    # Nor is a finished model trained on other data replaced unasked (a re-made dataset, another --data).
    with pytest.raises(TrainingError, match="holds a model trained on other data .* pass --restart"):
        resume_point(out, replace(cfg, epochs=1), {**prov, "data_fingerprint": "0" * 16})
    assert resume_point(out, replace(cfg, epochs=1), {**prov, "data_fingerprint": "0" * 16}, restart=True) is None
    # One with other settings is skipped, saying so; --restart trains it again.
    warned, skipped = [], []
    fit_all(phantoms, tmp_path / "ck", [spec_for("resnet10t")], [0], replace(cfg, epochs=1, lr=2e-3),
            events=FitEvents(warn=warned.append, skip=skipped.append))
    assert skipped == ["resnet10t/seed0"]
    assert any("already trained with --lr 0.001, now 0.002; kept as it is and skipped" in w for w in warned)


def _import_resnet10t(phantoms, tmp_path, name="mine", **kw):
    import timm

    from gradfaith_tui.models.importer import import_model

    if not (tmp_path / "w.pth").is_file():
        torch.save(timm.create_model("resnet10t", num_classes=3).state_dict(), tmp_path / "w.pth")
    return import_model(tmp_path / "w.pth", ModelSpec(name, "resnet10t", "resnet50"), 32,
                        ["Normal", "Benign", "Malignant"], phantoms, tmp_path / "ck", **kw)


def test_import_never_replaces_a_checkpoint_unasked_and_takes_only_plain_names(phantoms, tmp_path):
    out = _import_resnet10t(phantoms, tmp_path)
    (out / "history.csv").write_text("epoch\n1\n")  # as a trained run leaves
    (out / "train_state.json").write_text("{}")
    card = read_card(out)
    with pytest.raises(CheckpointError, match="mine/seed0: a checkpoint is already there.*pass --force"):
        _import_resnet10t(phantoms, tmp_path)
    assert read_card(out) == card
    (out / "notes.txt").write_text("mine")  # a user's file beside the checkpoint is not the tool's to delete
    _import_resnet10t(phantoms, tmp_path, force=True)
    assert sorted(p.name for p in out.iterdir() if p.name != ".gradfaith-lock") == ["card.json", "model.safetensors",
                                                                                  "notes.txt"], "nothing stale stays"
    from gradfaith_tui.locks import writer_lock

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with writer_lock(out, "train"):  # a train running there: --force would delete its resume files under it
        with pytest.raises(GradfaithError, match=r"mine/seed0: another train is writing there \(pid \d+\)"):
            _import_resnet10t(phantoms, tmp_path, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".gradfaith-lock"} == \
        {k: v for k, v in before.items() if k != ".gradfaith-lock"}
    for name in ["", "  ", "../../escape", "a\\b", "a,b", ".hidden", " padded", "-dash"]:
        with pytest.raises(GradfaithError, match="^--name: "):
            _import_resnet10t(phantoms, tmp_path, name=name)
    with pytest.raises(GradfaithError, match="^--seed: -1"):
        _import_resnet10t(phantoms, tmp_path, seed=-1)
    from gradfaith_tui.models.importer import import_model

    with pytest.raises(GradfaithError, match="^--arch: unknown timm architecture 'nosuch'"):
        import_model(tmp_path / "w.pth", ModelSpec("x", "nosuch", "x"), 32, ["Normal", "Benign", "Malignant"],
                     phantoms, tmp_path / "ck")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["mine"] and not (tmp_path / "escape").exists()


@pytest.mark.parametrize("change,said", [
    (lambda c: [1, 2, 3], "expected a JSON object, found list"),
    (lambda c: {k: v for k, v in c.items() if k != "arch"}, '"arch" is missing'),
    (lambda c: {**c, "img_size": -3}, '"img_size" must be a whole number of pixels'),
    (lambda c: {**c, "kwargs": [1]}, '"kwargs" must be an object'),
    (lambda c: {**c, "class_names": "Normal"}, '"class_names" must be a list'),
    (lambda c: {**c, "class_names": ["Normal", "Benign"]}, '"class_names" must be Normal, Benign, Malignant'),
    (lambda c: {**c, "kwargs": {"bogus_kw": 1}}, r"cannot build resnet10t .*unexpected keyword argument 'bogus_kw'"),
    (lambda c: {**c, "arch": "nosuch"}, "unknown model 'nosuch'"),
], ids=["list", "no-arch", "img-size", "kwargs", "class-names", "two-classes", "bogus-kwarg", "unknown-arch"])
def test_a_card_of_the_wrong_shape_is_one_error_naming_it(phantoms, tmp_path, change, said):
    from gradfaith_tui.models.registry import find_checkpoints

    out = _import_resnet10t(phantoms, tmp_path)
    (out / "card.json").write_text(json.dumps(change(read_card(out))))
    with pytest.raises(CheckpointError, match=f"mine/seed0/card.json: .*{said}"):
        find_checkpoints(tmp_path / "ck")[0]
        load_checkpoint(out)


def test_unreadable_weights_are_one_whole_sentence(tmp_path, recwarn):
    import pickle

    from gradfaith_tui.models.factory import describe_error
    from gradfaith_tui.models.weights_file import read_state

    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty.pt: unreadable weights \(the file is empty\)$"):
        read_state(tmp_path / "empty.pt")
    with open(tmp_path / "plain.pkl", "wb") as f:  # protocol 4: torch warns about it before refusing
        pickle.dump({"w": torch.zeros(2)}, f, protocol=4)
    with pytest.raises(CheckpointError, match=r"plain.pkl: unreadable weights: .*weights_only=True.*\.safetensors file$"):
        read_state(tmp_path / "plain.pkl")
    assert not [w for w in recwarn if "pickle" in str(w.message)], "no warning before the one line"
    assert describe_error(EOFError()) == "EOFError"
    assert describe_error(ValueError("\x1b[1mBad\x1b[0m thing. More text\nand more")) == "ValueError: Bad thing."


def test_an_unfinished_checkpoint_is_named_before_its_numbers_are_used(phantoms, tmp_path):
    from gradfaith_tui.locks import writer_lock
    from gradfaith_tui.models.evaluate_all import evaluate_all
    from gradfaith_tui.models.registry import find_checkpoints, unfinished

    out = _import_resnet10t(phantoms, tmp_path)
    assert unfinished(find_checkpoints(tmp_path / "ck")) == []  # an import has no epochs to finish
    card = read_card(out)
    (out / "card.json").write_text(json.dumps({**card, "epochs": 4, "epochs_done": 1}))  # as a stopped run leaves
    said = []
    evaluate_all(phantoms, tmp_path / "ck", None, None, warn=said.append)
    assert any("mine/seed0: trained 1 of 4 epochs (the run was stopped)" in w for w in said)
    with writer_lock(out, "train"):  # a train still at work there holds its folder's lock: not "stopped"
        said = unfinished(find_checkpoints(tmp_path / "ck"))
    assert len(said) == 1 and f"mine/seed0: still training (1 of 4 epochs so far, pid {os.getpid()})" in said[0]
    assert "stopped" not in said[0]
    with writer_lock(out, "import"):  # another kind of work is not a train
        assert "the run was stopped" in unfinished(find_checkpoints(tmp_path / "ck"))[0]


def test_a_full_disk_while_saving_is_one_oserror_and_leaves_no_partial_file(tmp_path):
    import errno

    from gradfaith_tui.models.card import replace_atomically

    def torch_save_on_a_full_disk(tmp):
        tmp.write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 28902784 vs 28902672")

    with pytest.raises(OSError) as caught:
        replace_atomically(tmp_path / "optim-0.pt", torch_save_on_a_full_disk)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "optim-0.pt")
    assert "free some space and rerun to resume" in caught.value.strerror
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError):  # other failures stay what they are
        replace_atomically(tmp_path / "x", lambda tmp: (_ for _ in ()).throw(ValueError("bad")))


@pytest.mark.parametrize("stop_after", ["waiting card", "weights linked"])
def test_a_run_stopped_while_a_new_best_is_put_in_place_never_has_a_card_naming_other_weights(
        phantoms, tmp_path, monkeypatch, stop_after):
    import gradfaith_tui.models.train as train_mod
    from gradfaith_tui.models.card import file_hash
    from gradfaith_tui.models.registry import find_checkpoints

    prep, tr, va = _arrays(phantoms)
    prov = {"data_fingerprint": prep.fingerprint, "split_hash": prep.split_hash, "split_seed": 0}
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-3, img_size=32)
    out = tmp_path / "ck" / "resnet10t" / "seed0"
    train(spec_for("resnet10t"), 0, tr, va, TrainConfig(epochs=2, batch_size=16, lr=1e-3, img_size=32), out, prov)
    first = read_card(out)
    real_link = train_mod.link_or_copy

    def stops(src, dst):  # the next run's first best: its card waits; the weights are or are not in place yet
        if stop_after == "weights linked":
            real_link(src, dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "link_or_copy", stops)
    with pytest.raises(KeyboardInterrupt):
        train(spec_for("resnet10t"), 1, tr, va, cfg, out, prov, restart=True)
    monkeypatch.setattr(train_mod, "link_or_copy", real_link)
    assert (out / "card.json.next").is_file()
    (ckpt,) = find_checkpoints(tmp_path / "ck")  # what precompute and evaluate read settles it first
    assert ckpt.card["weights_sha1"] == file_hash(out / "model.safetensors") and not (out / "card.json.next").exists()
    assert ckpt.card["epochs_done"] == (1 if stop_after == "weights linked" else first["epochs_done"])


def test_a_waiting_card_is_left_alone_while_a_writer_holds_the_folder_and_locks_may_be_unsupported(
        phantoms, tmp_path, monkeypatch):
    import errno
    import fcntl

    from gradfaith_tui.locks import writer_lock
    from gradfaith_tui.models.distributed import Dist
    from gradfaith_tui.models.registry import find_checkpoints

    out = _import_resnet10t(phantoms, tmp_path)
    card = read_card(out)
    (out / "card.json.next").write_text(json.dumps({**card, "weights_sha1": "not-these-weights"}))
    with writer_lock(out, "train"):  # a live run between its waiting card and its weights: not ours to settle
        find_checkpoints(tmp_path / "ck")
        assert (out / "card.json.next").exists()
    find_checkpoints(tmp_path / "ck")
    assert not (out / "card.json.next").exists() and read_card(out) == card  # a stopped run's: dropped
    (out / "model.safetensors").unlink()
    (out / "card.json").unlink()
    _import_resnet10t(phantoms, tmp_path)  # a folder holding only the lock file is free for an import

    def no_flock(fd, op):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)  # Lustre without -o flock: work goes on unlocked
    with writer_lock(tmp_path / "lustre", "precompute"):
        pass

    def timeout():
        raise RuntimeError("Timed out waiting 1800000ms for send operation to complete")

    with pytest.raises(RuntimeError, match="Timed out"):  # its own cause, not blame on another rank
        with Dist(1, 2)._peers():
            timeout()


def test_a_resumed_run_says_so_and_its_bar_starts_at_the_saved_epochs(phantoms, tmp_path):
    from gradfaith_tui.cli.progress import fit_events
    from gradfaith_tui.config import spec_for
    from gradfaith_tui.models.fit import FitEvents, fit_all
    from rich.console import Console
    from rich.progress import Progress

    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-3, img_size=32)

    class Stop(Exception):
        pass

    def stop(model_id, e, row):
        raise Stop()  # a kill after the first saved epoch

    with pytest.raises(Stop):
        fit_all(phantoms, tmp_path, [spec_for("resnet10t")], [0], cfg, events=FitEvents(epoch=stop))
    console = Console(file=io.StringIO(), width=120)
    with Progress(console=console) as progress:
        events = fit_events(progress)
        at_start = []
        shown = events.start
        events.start = lambda *a: (shown(*a), at_start.append(progress.tasks[-1].completed))
        fit_all(phantoms, tmp_path, [spec_for("resnet10t")], [0], cfg, events=events)
        task = progress.tasks[0]
        assert at_start == [task.total / 2] and task.completed == task.total  # from epoch 1 of 2, not from 0
    said = console.file.getvalue()
    assert "train resnet10t/seed0: resuming after epoch 1 of 2 (saved)" in said


def test_a_run_refused_before_it_wrote_anything_leaves_no_folder_behind(tmp_path):
    """Only the lock in a checkpoint folder it made looked like a started run (`--pretrained-file` whose head did
    not fit a second model left `tinynet_e/seed0/.gradfaith-lock`)."""
    from gradfaith_tui.errors import CheckpointError
    from gradfaith_tui.locks import writer_lock

    out = tmp_path / "ck" / "tinynet_e" / "seed0"
    with pytest.raises(CheckpointError):
        with writer_lock(out, "train"):
            raise CheckpointError("weights do not fit")
    assert not (tmp_path / "ck").exists()  # and the parents it made for it
    (tmp_path / "ck").mkdir()
    with pytest.raises(KeyboardInterrupt):
        with writer_lock(out, "train"):
            (out / "state.pt").write_text("an epoch")  # work done: kept, to resume
            raise KeyboardInterrupt
    assert (out / "state.pt").is_file()
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(CheckpointError):
        with writer_lock(kept, "train"):  # a folder that was there: left as it was, lock and all
            raise CheckpointError("x")
    assert kept.is_dir()


def test_training_data_of_one_class_is_refused_before_any_training(phantoms, tmp_path):
    import shutil

    from gradfaith_tui.config import spec_for
    from gradfaith_tui.errors import TrainingError
    from gradfaith_tui.models.fit import fit_all
    from gradfaith_tui.models.train import TrainConfig

    one = tmp_path / "one"
    shutil.copytree(phantoms / "Normal cases", one / "Normal cases")
    with pytest.raises(TrainingError, match=r"training split holds images of Normal only; a classifier needs two"):
        fit_all(one, tmp_path / "ck", [spec_for("resnet10t")], [0], TrainConfig(epochs=1, batch_size=4, lr=1e-3, img_size=32))
    assert not (tmp_path / "ck").exists()  # `data check` calls it not usable; train scored it 1.00


def test_other_data_guesses_a_folder_level_only_where_one_folder_holds_the_other(tmp_path):
    from gradfaith_tui.models.card import other_data

    card = {"data_fingerprint": "abc", "data": str(tmp_path / "ph-s")}
    unrelated = other_data(card, "def", tmp_path / "phantoms")
    assert f"it was trained with --data {tmp_path / 'ph-s'}, this run has --data {tmp_path / 'phantoms'})" in unrelated
    assert "folder level" not in unrelated  # two sibling datasets: no such guess
    assert "another folder level" in other_data(card, "def", tmp_path)  # one folder up
    assert "another folder level" in other_data(card, "def", tmp_path / "ph-s" / "inner")


@pytest.mark.parametrize("lost", ["optim", "weights", "state"])
def test_an_unfinished_run_missing_a_resume_file_stops_naming_it_and_keeps_the_epochs(phantoms, tmp_path, lost):
    import shutil

    from gradfaith_tui.errors import TrainingError

    tr, va, cfg, out, prov = _stopped_after_one_of_two_epochs(phantoms, tmp_path)
    slot = json.loads((out / "train_state.json").read_text())["slot"]
    gone = out / {"optim": f"optim{slot}.pt", "weights": f"last{slot}.safetensors", "state": "train_state.json"}[lost]
    gone.unlink()  # once: trained anew from scratch, unsaid, over the finished epoch's best checkpoint
    kept = Path(shutil.copytree(out, tmp_path / "kept"))
    with pytest.raises(TrainingError, match=rf"^{re.escape(str(gone))}: missing.*pass --restart") as err:
        train(spec_for("resnet10t"), 0, tr, va, cfg, out, prov)
    assert "\n" not in str(err.value) and ("1 finished epoch" in str(err.value) or "after 1 of 2 epochs" in str(err.value))
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in kept.iterdir())
    assert (out / "model.safetensors").read_bytes() == (kept / "model.safetensors").read_bytes()
    assert train(spec_for("resnet10t"), 0, tr, va, cfg, out, prov, restart=True)["epochs_done"] == 2


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_finished_card_over_lost_weights_is_not_trained_and_train_says_so(phantoms, trained, tmp_path, damage):
    import shutil

    from gradfaith_tui.config import spec_for
    from gradfaith_tui.errors import TrainingError
    from gradfaith_tui.models.fit import fit_all
    from gradfaith_tui.models.resume import is_complete

    ckpt = Path(shutil.copytree(trained, tmp_path / "ck"))
    out = ckpt / "resnet10t" / "seed0"
    weights = out / "model.safetensors"
    card = read_card(out)
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:-100])  # a copy cut short
    assert not is_complete(out, 1, card["data_fingerprint"])
    cfg = TrainConfig(**card["train_config"])
    with pytest.raises(TrainingError, match=rf"^{re.escape(str(weights))}: {damage if damage == 'missing' else 'damaged'}"
                                            r".*card.json says trained for 1 epochs.*pass --restart"):
        fit_all(phantoms, ckpt, [spec_for("resnet10t")], [0], cfg)


def test_weights_without_their_card_are_named_not_skipped(trained, tmp_path):
    import shutil

    from gradfaith_tui.models.registry import find_checkpoints

    ckpt = Path(shutil.copytree(trained, tmp_path / "ck"))
    (ckpt / "resnet10t" / "seed1" / "card.json").unlink()
    with pytest.raises(CheckpointError, match=r"resnet10t/seed1: model.safetensors without its card.json.*restore the card"):
        find_checkpoints(ckpt)  # once: evaluated and precomputed without it, unsaid
    with pytest.raises(CheckpointError, match="seed1: model.safetensors without its card.json"):
        find_checkpoints(ckpt, ["resnet10t"])
    assert [c.model_id for c in find_checkpoints(ckpt, ["resnet10t"], [0])] == ["resnet10t/seed0"]
    other = sorted(p.name for p in ckpt.iterdir() if p.name != "resnet10t")
    assert {c.card["name"] for c in find_checkpoints(ckpt, other)} == set(other)  # not asked for: not in the way
