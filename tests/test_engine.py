"""The CAM engine: agreement with pytorch-grad-cam, ViT rollout, perturbation and sanity metrics."""

import copy

import numpy as np
import pytest
import torch

from gradfaith_tui.cam.engine import explainer
from gradfaith_tui.cam.fast_gradcam import FastGradCAM
from gradfaith_tui.cam.layers import find
from gradfaith_tui.cam.methods import cam_batch, upsample
from gradfaith_tui.config import PAPER_ARCHS, ModelSpec, spec_for
from gradfaith_tui.errors import GradfaithError
from gradfaith_tui.metrics.perturbation import deletion_insertion
from gradfaith_tui.metrics.sanity import _reinit, cascading_randomisation, spearman, stages
from gradfaith_tui.models.factory import build


@pytest.mark.parametrize("arch", PAPER_ARCHS + ("vit-tiny-p8", "densenet-s", "tinynet_e"))
def test_fast_gradcam_agrees_with_pytorch_grad_cam(arch):
    torch.manual_seed(0)
    size = 96 if arch in PAPER_ARCHS else 64
    model = build(spec_for(arch), size).eval()
    layer = find(model.net)
    x = torch.rand(4, 1, size, size)
    targets = torch.tensor([0, 1, 2, 1])
    ref, ref_logits = cam_batch(model, layer, x, targets.numpy())
    with FastGradCAM(model, layer) as f:
        out = f(x, targets)
    ours = out.maps.numpy()
    assert ours.shape == ref.shape
    # The library drifts up to ~1% on EfficientNets (ours matches a float64 run to 1e-6, see below).
    np.testing.assert_allclose(ours, ref, atol=2e-2)
    for a, b in zip(ours, ref):
        if a.std() > 1e-6 and b.std() > 1e-6:
            assert np.corrcoef(a.ravel(), b.ravel())[0, 1] >= 0.99
    torch.testing.assert_close(out.logits, ref_logits.float())
    assert torch.equal(out.targets, targets)


@pytest.mark.parametrize("name", ["layer4.0.bn1", "bn1", "layer4.0.drop_block"])
def test_a_target_layer_followed_by_an_in_place_op_gives_the_librarys_maps(name):
    """A BatchNorm before an in-place ReLU: the hook's output is changed in place by the next layer (which also
    spoils the library's copy of the activations on a CPU: the reference runs on a copy with plain ReLUs)."""
    torch.manual_seed(0)
    model = build(spec_for("resnet10t"), 64).eval()
    layer = find(model.net, name)
    x, targets = torch.rand(3, 1, 64, 64), torch.tensor([0, 1, 2])
    plain = copy.deepcopy(model)
    for m in plain.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    ref, _ = cam_batch(plain, find(plain.net, name), x, targets.numpy())
    with FastGradCAM(model, layer) as f:
        ours = f(x, targets).maps.numpy()
    np.testing.assert_allclose(ours, ref, atol=2e-2)


def test_fast_gradcam_fp32_equals_a_float64_run():
    torch.manual_seed(0)
    model = build(spec_for("tinynet_e"), 64).eval()
    x, t = torch.rand(3, 1, 64, 64), torch.tensor([0, 1, 2])
    with FastGradCAM(model, find(model.net)) as f:
        single = f(x, t).maps
    model = model.double()
    with FastGradCAM(model, find(model.net)) as f:
        double = f(x.double(), t).maps
    torch.testing.assert_close(single.double(), double.double(), atol=1e-4, rtol=0)


def test_fast_gradcam_records_only_from_the_target_layer_and_restores_the_weights():
    torch.manual_seed(0)
    model = build(spec_for("resnet10t"), 64).eval()
    seen = []
    model.net.conv1.register_forward_hook(lambda m, i, o: seen.append(o.requires_grad))
    with FastGradCAM(model, find(model.net), fold=False) as f:  # the hooked engine
        f(torch.rand(2, 1, 64, 64))
        with torch.no_grad():  # a plain forward inside the block (Faith's) is left alone
            model(torch.rand(2, 1, 64, 64))
    assert seen == [False, False]  # no graph (no saved activations) for the trunk
    assert all(p.requires_grad for p in model.parameters()) and all(p.grad is None for p in model.parameters())


def _explained_with_faith(f: FastGradCAM, x, t):
    from gradfaith_tui.metrics.faithfulness import faith

    ex = f(x, t)
    return ex, faith(f.forward, x, ex.logits, upsample(ex.maps, 64), t)


def _assert_same_as_hooked(model, x, t, got):
    """got: (Explained, Faith) from a split engine; the hooked engine's on the same input must match."""
    with FastGradCAM(model, find(model.net), fold=False) as f:
        hooked, hooked_faith = _explained_with_faith(f, x, t)
    (ex, ex_faith) = got
    torch.testing.assert_close(ex.maps, hooked.maps, atol=1e-4, rtol=0)
    torch.testing.assert_close(ex.logits, hooked.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ex_faith, hooked_faith, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ["resnet10t", "resnet14t"])
def test_folded_split_gives_the_hooked_engines_maps_logits_and_faith(arch):
    torch.manual_seed(0)
    model = build(spec_for(arch), 64).eval()
    x, t = torch.rand(3, 1, 64, 64), torch.tensor([0, 1, 2])
    with FastGradCAM(model, find(model.net)) as f:
        assert f.split is not None and f.forward is f.split
        folded = _explained_with_faith(f, x, t)
        # a ResNet's BatchNorms are all folded into its convolutions
        assert not any(type(m) is torch.nn.BatchNorm2d for m in f.split.trunk.modules())
    _assert_same_as_hooked(model, x, t, folded)
    assert all(p.requires_grad for p in model.parameters())


def test_split_only_where_the_target_layer_ends_the_features():
    model = build(spec_for("resnet10t"), 64).eval()
    with FastGradCAM(model, find(model.net, "layer3")) as f:  # a layer inside the net: the hook
        assert f.split is None and f.forward is model
        assert f(torch.rand(2, 1, 64, 64)).maps.shape == (2, 4, 4)
    for other in ("vit-tiny-p8", "tinynet_e", "densenet-s"):  # ViT tokens; BatchNormAct, nothing to fold
        net = build(spec_for(other), 64).eval()
        with FastGradCAM(net, find(net.net)) as f:
            assert f.split is None


class _Recorder:
    """A stand-in for CUDA graph recording on the CPU: counts recordings (by batch size) and replays."""

    def __init__(self, fail: bool = False, fail_wider: bool = False):
        self.recorded, self.replays, self.fail, self.fail_wider = 0, 0, fail, fail_wider
        self.sizes: list[int] = []
        self.seen: list[int] = []  # the rows of each replay (padding included)

    def __call__(self, graphed, x):
        if self.fail or (self.fail_wider and self.recorded):
            raise RuntimeError("operation not permitted when stream is capturing")
        self.recorded += 1
        self.sizes.append(len(x))
        size = len(x)

        def replay(inp):
            assert len(inp) == size  # a replay sees exactly the recorded shape
            self.replays += 1
            self.seen.append(size)
            return graphed.fn(inp)
        return replay


def _graphed_on_cpu(monkeypatch, recorder):
    from gradfaith_tui.cam import graphs
    from gradfaith_tui.models import precision

    monkeypatch.setattr(precision, "GRAPH_DEVICES", ("cpu",))
    monkeypatch.setattr(graphs.GraphedForward, "_record", lambda self, x: recorder(self, x))
    return graphs.GraphedForward


def test_the_first_shape_is_recorded_and_smaller_batches_replay_padded_into_it(monkeypatch):
    rec = _Recorder()
    seen = []
    g = _graphed_on_cpu(monkeypatch, rec)(lambda x: seen.append(len(x)) or x * 2)
    a = torch.arange(12.0).view(4, 3)
    with torch.no_grad():
        assert torch.equal(g(a), a * 2) and (rec.recorded, rec.replays) == (1, 1)
        assert torch.equal(g(a[:2]), a[:2] * 2) and rec.replays == 2  # the last batch: padded, not a new shape
        assert seen[-1] == 4
        g(torch.ones(4, 5))  # another image size: plain
        assert (rec.recorded, rec.replays, seen[-1]) == (1, 2, 4)
    g(a)  # autograd on: always the plain forward
    assert rec.replays == 2


def test_whole_multiples_of_the_batch_get_their_own_graphs_and_other_sizes_fit_into_them(monkeypatch):
    """Precompute's three edits of a batch go through as one pass of 3x its rows; --deep's steps as 2x."""
    rec = _Recorder()
    g = _graphed_on_cpu(monkeypatch, rec)(lambda x: x * 2)
    x = torch.arange(60.0).view(20, 3)
    with torch.no_grad():
        for rows, recorded in ((4, [4]), (12, [4, 12]), (9, [4, 12]), (8, [4, 12, 8]), (7, [4, 12, 8]),
                               (16, [4, 12, 8]), (20, [4, 12, 8])):
            assert torch.equal(g(x[:rows]), x[:rows] * 2), rows
            assert rec.sizes == recorded, rows  # 9 and 7: padded into 12 and 8; 16 (widths=3 reached), 20: chunks of 12
    assert rec.replays == 9 and g.recorded == 3 and g.narrow is None


def test_small_passes_that_recur_get_a_quarter_size_graph_and_one_seen_once_stays_padded(monkeypatch):
    """Precompute's marked rows on phantoms: a small pass every batch, which padding would make a full one."""
    rec = _Recorder()
    g = _graphed_on_cpu(monkeypatch, rec)(lambda x: x * 2, small=True)
    x = torch.arange(48.0).view(16, 3)
    with torch.no_grad():
        for rows, recorded, replayed in ((16, [16], 16), (3, [16], 16), (4, [16, 4], 4), (2, [16, 4], 4),
                                         (5, [16, 4], 16), (16, [16, 4], 16)):
            assert torch.equal(g(x[:rows]), x[:rows] * 2), rows
            assert rec.sizes == recorded and rec.seen[-1] == replayed, rows
    rec = _Recorder()
    g = _graphed_on_cpu(monkeypatch, rec)(lambda x: x * 2)  # without small (a compiled trunk): always padded
    with torch.no_grad():
        for rows in (16, 3, 4, 2):
            assert torch.equal(g(x[:rows]), x[:rows] * 2) and rec.sizes == [16] and rec.seen[-1] == 16


def test_a_wider_graph_that_fails_to_record_leaves_the_first_in_use(monkeypatch):
    rec = _Recorder(fail_wider=True)
    g = _graphed_on_cpu(monkeypatch, rec)(lambda x: x + 1)
    x = torch.zeros(12, 3)
    with torch.no_grad():
        assert torch.equal(g(x[:4]), x[:4] + 1)
        assert torch.equal(g(x), x + 1)  # 12 rows: no graph of 12, so three replays of the one of 4
        assert torch.equal(g(x[:8]), x[:8] + 1)  # not tried again
    assert (rec.recorded, rec.replays) == (1, 6) and g.broken is None and "capturing" in g.narrow


def test_a_failed_recording_falls_back_to_the_plain_forward_and_says_why(monkeypatch):
    g = _graphed_on_cpu(monkeypatch, _Recorder(fail=True))(lambda x: x + 1)
    with torch.no_grad():
        for _ in range(3):
            assert torch.equal(g(torch.zeros(2)), torch.ones(2))
    assert "capturing" in g.broken and g.recorded == 0


@pytest.mark.parametrize("arch", ["tinynet_e", "densenet-s"])
def test_unfolded_split_for_graphs_gives_the_hooked_engines_maps_logits_and_faith(monkeypatch, arch):
    """On CUDA, nets with nothing to fold still split, so their trunk can be replayed from a graph; here the
    recording itself is a stand-in that counts (the real one needs a GPU: benchmarks/cam_speed.py checks it)."""
    rec = _Recorder()
    _graphed_on_cpu(monkeypatch, rec)
    torch.manual_seed(0)
    model = build(spec_for(arch), 64).eval()
    x, t = torch.rand(3, 1, 64, 64), torch.tensor([0, 1, 2])
    with FastGradCAM(model, find(model.net)) as f:
        assert f.split is not None and f.split.graphed is not None
        f(x, t)  # the clean trunk pass: recorded on the first batch, replayed from then on
        split = _explained_with_faith(f, x, t)
        assert (rec.recorded, rec.replays) == (1, 3) and f.split.path == "graphed"
    with FastGradCAM(model, find(model.net), graphs=False) as f:
        assert f.split is None  # on a CPU without graphs: nothing to fold, so the hook
    _assert_same_as_hooked(model, x, t, split)


@pytest.mark.parametrize("layer", [None, "blocks.2.norm1", "blocks.3.attn.qkv"])
def test_vit_split_at_the_layers_block_gives_the_hooked_engines_maps_logits_and_faith(monkeypatch, layer):
    """On CUDA a ViT's blocks before the one holding the CAM layer are replayed from a graph, and the rest
    runs with the hook; precompute's edits go through the same split (here the recording is a stand-in)."""
    rec = _Recorder()
    _graphed_on_cpu(monkeypatch, rec)
    torch.manual_seed(0)
    model = build(spec_for("vit-tiny-p8"), 64).eval()
    x, t = torch.rand(3, 1, 64, 64), torch.tensor([0, 1, 2])
    with FastGradCAM(model, find(model.net, layer)) as f:
        k = int(find(model.net, layer).name.split(".")[1])
        assert f.split is not None and f.split.hooked and f._handle is not None
        f(x, t)
        split = _explained_with_faith(f, x, t)
        assert (rec.recorded, rec.replays) == (1, 3) and f.split.path == f"head from block {k}, graphed"
        assert rec.sizes == [3]
    assert f._handle is None and all(p.requires_grad for p in model.parameters())
    with FastGradCAM(model, find(model.net, layer), fold=False) as f:
        hooked, hooked_faith = _explained_with_faith(f, x, t)
    torch.testing.assert_close(split[0].maps, hooked.maps, atol=1e-4, rtol=0)
    torch.testing.assert_close(split[0].logits, hooked.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(split[1], hooked_faith, atol=1e-4, rtol=1e-4)


def test_vit_keeps_the_hook_for_a_whole_block_or_a_vit_whose_features_differ(monkeypatch):
    _graphed_on_cpu(monkeypatch, _Recorder())
    model = build(spec_for("vit-tiny-p8"), 32).eval()
    with FastGradCAM(model, find(model.net, "blocks.5")) as f:  # the block's own output: no layer inside the head
        assert f.split is None
    original = type(model.net).forward_features  # a subclass with a step of its own, say
    monkeypatch.setattr(type(model.net), "forward_features", lambda self, x, **kw: original(self, x, **kw) * 2)
    with FastGradCAM(model, find(model.net)) as f:
        assert f.split is None
        assert f(torch.rand(2, 1, 32, 32)).maps.shape == (2, 4, 4)


def test_entering_the_vit_split_leaves_the_random_stream_and_on_failure_the_weights_as_they_were(monkeypatch):
    from gradfaith_tui.cam import fast_gradcam

    _graphed_on_cpu(monkeypatch, _Recorder())
    model = build(spec_for("vit-tiny-p8"), 32).eval()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    with FastGradCAM(model, find(model.net)) as f:
        assert f.split is not None  # the probe ran, on its own generator
    assert torch.equal(torch.rand(3), expected)

    def out_of_memory(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(fast_gradcam, "split_at", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        with FastGradCAM(model, find(model.net)):
            pass
    assert all(p.requires_grad for p in model.parameters())


def test_a_vit_probe_that_fails_keeps_the_hook(monkeypatch):
    _graphed_on_cpu(monkeypatch, _Recorder())
    model = build(spec_for("vit-tiny-p8"), 32).eval()
    monkeypatch.setattr(type(model.net), "forward_head", lambda self, x, **kw: (_ for _ in ()).throw(RuntimeError("odd head")))
    with FastGradCAM(model, find(model.net)) as f:
        assert f.split is None and f._handle is not None


def test_graph_recording_on_a_machine_without_cuda_fails_softly(monkeypatch):
    from gradfaith_tui.models import precision

    monkeypatch.setattr(precision, "GRAPH_DEVICES", ("cpu",))  # the real recorder, on a CPU tensor: it cannot record
    model = build(spec_for("resnet10t"), 64).eval()
    x = torch.rand(2, 1, 64, 64)
    with FastGradCAM(model, find(model.net), graphs=False) as f:
        expected = f(x)
    with FastGradCAM(model, find(model.net)) as f:
        got = [f(x) for _ in range(3)][-1]
        assert f.split.graphed.broken and f.split.path.startswith("folded, not graphed")
    torch.testing.assert_close(got.maps, expected.maps)


def test_rollout_for_vit_only_and_restores_fused_attention():
    vit = build(spec_for("vit-tiny-p8"), 32).eval()
    fused = vit.net.blocks[0].attn.fused_attn
    for method in ("rollout", "grad-rollout"):
        with explainer(vit, find(vit.net), method) as explain:
            ex = explain(torch.rand(2, 1, 32, 32))
        assert ex.maps.shape == (2, 4, 4) and float(ex.maps.max()) == pytest.approx(1.0, abs=1e-3)
    assert vit.net.blocks[0].attn.fused_attn == fused
    cnn = build(spec_for("resnet10t"), 32)
    with pytest.raises(GradfaithError, match="only for ViT"):
        with explainer(cnn, find(cnn.net), "rollout"):
            pass


def test_library_methods_through_the_engine():
    model = build(spec_for("resnet10t"), 64).eval()
    for method in ("gradcam++", "hirescam", "xgradcam", "layercam", "eigencam"):
        with explainer(model, find(model.net), method) as explain:
            ex = explain(torch.rand(2, 1, 64, 64))
        assert ex.maps.shape == (2, 4, 4), method


class _TopHalf(torch.nn.Module):
    """Class 1's logit is 6x the mean brightness of the top half: only that region matters."""

    def forward(self, x):
        top = x[:, :, : x.shape[2] // 2].mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(top), 6 * top, torch.zeros_like(top)], 1)


def test_deletion_falls_fast_and_insertion_rises_fast_for_a_faithful_map():
    model = _TopHalf()
    x = torch.ones(1, 1, 8, 8)
    good = torch.zeros(1, 8, 8)
    good[:, :4] = 1.0
    good += torch.linspace(0, 0.1, 64).reshape(1, 8, 8)  # break ties deterministically
    bad = 1.1 - good
    t = torch.tensor([1])
    d_good, i_good = deletion_insertion(model, x, good, t, steps=8, baseline="black")
    d_bad, i_bad = deletion_insertion(model, x, bad, t, steps=8, baseline="black")
    assert d_good.item() < d_bad.item() and i_good.item() > i_bad.item()


def test_spearman_and_cascading_randomisation():
    a = torch.tensor([[1.0, 2, 3, 4]])
    assert spearman(a, a).item() == pytest.approx(1.0)
    assert spearman(a, -a).item() == pytest.approx(-1.0)
    assert spearman(a, torch.ones(1, 4)).item() == 0.0
    torch.manual_seed(0)
    model = build(spec_for("resnet10t"), 64).eval()
    assert stages(model.net, 4)[0][0] == "fc"

    def maps(m, x, t):
        with FastGradCAM(m, find(m.net)) as f:
            return f(x, t).maps

    x = torch.rand(3, 1, 64, 64)
    result = cascading_randomisation(model, x, torch.tensor([0, 1, 2]), maps, n_stages=3)
    assert [r["stage"] for r in result] == [1, 2, 3]
    assert result[-1]["randomised"].startswith("fc")
    assert all(-1 <= r["spearman"] <= 1 for r in result)
    assert model.net.fc.weight.abs().sum() > 0  # the original model is untouched (randomised on a copy)


def test_spearman_gives_tied_values_their_mean_rank():
    from scipy.stats import spearmanr

    a = torch.zeros(1, 49)
    b = torch.zeros(1, 49)
    a[0, 0], b[0, 48] = 1.0, 1.0  # one hot cell each, in opposite corners; zeros everywhere else
    assert spearman(a, b).item() == pytest.approx(spearmanr(a[0], b[0]).statistic, abs=1e-6)
    assert spearman(a, b).item() < 0.05  # position-ordered ties made this 0.83
    rng = np.random.default_rng(0)
    x, y = torch.from_numpy(np.maximum(rng.normal(size=(5, 49)), 0)), torch.from_numpy(np.maximum(rng.normal(size=(5, 49)), 0))
    want = [spearmanr(u, v).statistic for u, v in zip(x.numpy(), y.numpy())]
    np.testing.assert_allclose(spearman(x, y).numpy(), want, atol=1e-5)


def test_the_cascade_has_the_stages_asked_for_and_ends_with_everything_randomised():
    import timm

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=3, img_size=32, depth=2)
    groups = stages(vit, 4)
    assert len(groups) == 4 and groups[0][0] == "head" and {"pos_embed", "cls_token"} <= set(sum(groups[2:], []))
    rnd = copy.deepcopy(vit)
    for i, group in enumerate(groups):
        for name in group:
            _reinit(rnd, name, i)
    before, after = dict(vit.named_parameters()), dict(rnd.named_parameters())
    same = [k for k, v in before.items() if torch.equal(v, after[k]) and v.std() > 0]
    assert not same, same  # every learned parameter (constants such as a LayerNorm's ones aside) changed
    dense = build(spec_for("densenet-s"), 32).net
    assert [len(stages(dense, n)) for n in (1, 2, 3, 4)] == [1, 2, 3, 4]


def test_every_metric_is_the_same_when_passes_are_padded_into_a_recorded_graph(monkeypatch):
    """As in a run: the first batch records its shape and the three edits' (3x) in one pass; the last batch,
    its edits and the marked rows' counterfactual pass are smaller than those and replay padded into them."""
    from gradfaith_tui.metrics.per_case import batch_metrics

    rec = _Recorder()
    _graphed_on_cpu(monkeypatch, rec)
    torch.manual_seed(0)
    model = build(spec_for("tinynet_e"), 32).eval()
    x = torch.rand(8, 1, 32, 32)
    masks = np.zeros((8, 32, 32), bool)
    masks[:, 10:20, 10:20] = True
    body = np.zeros((8, 32, 32), bool)
    body[:, 4:28, 4:28] = True
    regions = np.zeros((8, 32, 32), bool)
    regions[[1, 3], :3, :3] = True  # two marked rows in the last batch: a pass of 2
    out = {}
    for graphs in (True, False):
        with FastGradCAM(model, find(model.net), graphs=graphs) as f:
            if graphs:  # the first batch, unmarked; --deep's steps (2 here) are passes of 2x the batch
                batch_metrics(f.forward, x, f(x), masks, body, masks, deep_steps=2)
                assert rec.sizes == [8, 24, 16] and rec.replays == 9  # + Faith's control's four draws, into 8
            last = slice(0, 5)
            ex = f(x[last])
            out[graphs] = batch_metrics(f.forward, x[last], ex, masks[last], body[last], masks[last],
                                        shortcut_regions=regions[last], deep_steps=2)
    # the last: its clean pass into 8, edits 15 into 24, marked 2 into 8, three steps of 10 into 16, the control's
    # four draws of 5 into 8
    assert rec.sizes == [8, 24, 16] and rec.replays == 19
    assert np.isfinite(out[True]["deletion_auc"]).all()
    for k, v in out[False].items():
        np.testing.assert_allclose(out[True][k], v, atol=1e-5, err_msg=k)


def _compiled_by(monkeypatch, backend="aot_eager"):
    from gradfaith_tui.cam import compiled

    monkeypatch.setattr(compiled, "BACKEND", backend)  # inductor's C++ code generation takes minutes on this VM


# A two-layer DenseNet: nothing to fold (timm's BatchNormAct), and traced in seconds where densenet-s takes ~50.
TINY_DENSENET = ModelSpec("densenet-xs", "densenet121", "densenet161", {"growth_rate": 8, "block_config": (1, 1)})


TINY_VIT = ModelSpec("vit-xs", "vit_tiny_patch16_224", "vit_base_patch16_224", {"patch_size": 8, "depth": 2})


@pytest.mark.parametrize("spec", [spec_for("resnet10t"), TINY_DENSENET, TINY_VIT], ids=lambda s: s.name)
def test_compiled_trunk_gives_the_same_maps_and_faith_for_every_batch_size(monkeypatch, spec):
    """A net with nothing to fold splits for the compiler too; the batch dimension stays dynamic where no
    graph pads batches into one shape, so the last batch needs no recompilation."""
    import torch._dynamo.utils as dynamo_utils

    _compiled_by(monkeypatch)
    torch.manual_seed(0)
    model = build(spec, 32).eval()
    x, t = torch.rand(5, 1, 32, 32), torch.tensor([0, 1, 2, 1, 0])
    with FastGradCAM(model, find(model.net)) as f:
        plain, plain_logits = f(x, t), f.forward(x)
    dynamo_utils.counters.clear()
    with FastGradCAM(model, find(model.net), compile=True) as f:
        parts = [f(x[:3], t[:3]), f(x[3:], t[3:])]
        with torch.no_grad():
            logits = f.forward(x)
        assert f.split.path.endswith("compiled") and f.split.compiled.broken is None
    graphs = dynamo_utils.counters["stats"]["unique_graphs"]
    assert 1 <= graphs <= 2  # traced once (twice at most where a layer breaks the graph), not per batch size
    torch.testing.assert_close(torch.cat([p.maps for p in parts]), plain.maps, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, plain_logits, atol=1e-5, rtol=1e-5)
    assert all(p.requires_grad for p in model.parameters())  # restored on exit


def test_a_failed_compile_falls_back_to_the_plain_trunk_and_says_why(monkeypatch):
    def no_compiler(gm, example_inputs):
        raise RuntimeError("no C++ compiler found")

    _compiled_by(monkeypatch, no_compiler)
    torch.manual_seed(0)
    model = build(spec_for("resnet10t"), 32).eval()
    x = torch.rand(2, 1, 32, 32)
    with FastGradCAM(model, find(model.net)) as f:
        expected = f(x).maps
    with FastGradCAM(model, find(model.net), compile=True) as f:
        got = [f(x).maps for _ in range(2)][-1]
        assert "no C++ compiler" in f.split.compiled.broken and "not compiled" in f.split.path
    torch.testing.assert_close(got, expected)


def test_a_static_compile_recompiles_once_for_other_batch_sizes_not_once_each(monkeypatch):
    """Should the CUDA graph fail to record, batches of other sizes reach the static compile: one more
    (dynamic) compilation serves them all."""
    import torch._dynamo.utils as dynamo_utils

    from gradfaith_tui.cam.compiled import CompiledForward

    _compiled_by(monkeypatch)
    dynamo_utils.counters.clear()
    f = CompiledForward(lambda x: torch.relu(x * 2 - 1).sum(-1), static=True)
    for n in (8, 5, 3, 2):
        x = torch.rand(n, 4)
        torch.testing.assert_close(f(x), torch.relu(x * 2 - 1).sum(-1))
    assert dynamo_utils.counters["stats"]["unique_graphs"] == 2 and f.broken is None
    f.release()
