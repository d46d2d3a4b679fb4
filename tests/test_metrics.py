import numpy as np
import pytest
import torch

from gradfaith_tui.metrics.consistency import consist
from gradfaith_tui.metrics.faithfulness import faith, remove
from gradfaith_tui.metrics.localization import binarise, iou, loc_acc, mask_iou, normalise
from gradfaith_tui.models.table1 import confusion, table1


def test_locacc_is_share_of_mask_under_the_binarised_map():
    cam = np.zeros((1, 4, 4))
    cam[0, :2, :2] = 1.0  # hot top-left quadrant
    mask = np.zeros((1, 4, 4), bool)
    mask[0, 1:3, 1:3] = True  # 4 lesion pixels, 1 of them under the heat
    assert loc_acc(cam, mask, 0.5).tolist() == [0.25]
    assert mask_iou(cam, mask, 0.5).tolist() == pytest.approx([1 / 7])


def test_locacc_is_absent_without_a_mask_not_zero():
    assert np.isnan(loc_acc(np.ones((1, 3, 3)), np.zeros((1, 3, 3), bool))[0])


def test_normalise_and_binarise():
    m = np.array([[[2.0, 4.0], [6.0, 10.0]]])
    assert normalise(m).tolist() == [[[0.0, 0.25], [0.5, 1.0]]]
    assert binarise(m, 0.5).tolist() == [[[False, False], [True, True]]]
    assert normalise(np.full((1, 2, 2), 3.0)).tolist() == [[[0.0, 0.0], [0.0, 0.0]]]


def test_iou_and_consist_across_seeds():
    a = np.zeros((1, 4, 4))
    a[0, :2] = 1  # top half
    b = np.zeros((1, 4, 4))
    b[0, :, :2] = 1  # left half: overlap 4 of union 12
    assert iou(a > 0, b > 0).tolist() == pytest.approx([1 / 3])
    assert consist([a, a, b]).tolist() == pytest.approx([(1 + 1 / 3) / 2])
    # eq. 6 compares maps of one class: a seed explaining another class than the reference is left out of the case
    two = [np.concatenate([m, m]) for m in (a, a, b)]  # case 0 and case 1 alike
    targets = [np.array([2, 2]), np.array([2, 1]), np.array([1, 1])]  # seed 1 differs on case 1, seed 2 on both
    assert consist(two, targets_by_seed=targets).tolist()[0] == pytest.approx(1.0)
    assert np.isnan(consist(two, targets_by_seed=targets)[1])  # no other seed explains the reference's class
    assert consist(two, targets_by_seed=[np.array([0, 0])] * 3).tolist() == pytest.approx([(1 + 1 / 3) / 2] * 2)
    with pytest.raises(ValueError):
        consist([a])


def test_faith_is_the_drop_in_target_probability():
    class Brightness(torch.nn.Module):  # logits depend on the mean intensity of the top half only
        def forward(self, x):
            top = x[:, :, :2].mean(dim=(1, 2, 3))
            return torch.stack([torch.zeros_like(top), 4 * top, torch.zeros_like(top)], 1)

    model = Brightness()
    x = torch.ones(1, 1, 4, 4)
    logits = model(x)
    on_top = torch.zeros(1, 4, 4)
    on_top[:, :2] = 1
    drop_p, drop_l = faith(model, x, logits, on_top, torch.tensor([1]))
    p0 = torch.softmax(logits, 1)[0, 1]
    assert drop_p.item() == pytest.approx(p0.item() - 1 / 3)
    assert drop_l.item() == pytest.approx(4.0)
    drop_p, _ = faith(model, x, logits, 1 - on_top, torch.tensor([1]))  # heat where the model does not look
    assert drop_p.item() == pytest.approx(0.0)
    assert remove(x, on_top, "mean")[0, 0, 0, 0].item() == pytest.approx(1.0)


def test_table1_against_a_hand_computed_confusion_matrix():
    y_true = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
    y_pred = [0, 0, 1, 1, 2, 2, 2, 2, 0, 2]
    cm = confusion(np.array(y_true), np.array(y_pred))
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 4]]
    t = table1(cm)
    mal = t["per_class"]["Malignant"]
    assert mal["sensitivity"] == pytest.approx(4 / 5)  # tp 4, fn 1
    assert mal["specificity"] == pytest.approx(4 / 5)  # tn 4, fp 1
    assert mal["precision"] == pytest.approx(4 / 5)
    ben = t["per_class"]["Benign"]
    assert ben["precision"] == pytest.approx(1 / 2) and ben["recall"] == pytest.approx(1 / 2)
    assert t["macro"]["accuracy"] == pytest.approx(7 / 10)
    assert t["macro"]["sensitivity"] == pytest.approx(np.mean([2 / 3, 1 / 2, 4 / 5]))


def test_table1_says_none_where_a_value_does_not_exist_and_averages_over_the_classes_present():
    # Malignant absent from the split: its values do not exist, and the macro means are over Normal and Benign
    t = table1(confusion(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])))
    mal = t["per_class"]["Malignant"]
    assert (mal["sensitivity"], mal["recall"], mal["precision"], mal["f1"], mal["support"]) == (None, None, None, None, 0)
    assert mal["specificity"] == 1.0  # never predicted, all four cases are negatives
    assert t["macro"]["sensitivity"] == pytest.approx(np.mean([1 / 2, 1]))
    assert t["macro"]["precision"] == pytest.approx(np.mean([1, 2 / 3]))
    # one class only, all right: no other class, so no specificity; accuracy 1
    one = table1(confusion(np.array([2, 2, 2]), np.array([2, 2, 2])))
    assert one["per_class"]["Malignant"]["specificity"] is None and one["macro"]["specificity"] is None
    assert one["macro"]["sensitivity"] == 1.0 and one["macro"]["accuracy"] == 1.0
    # a class present but never predicted: precision and F1 0 (scikit-learn's zero_division=0), counted
    never = table1(confusion(np.array([0, 1, 2, 2]), np.array([0, 0, 2, 2])))
    assert never["per_class"]["Benign"]["precision"] == 0.0 and never["per_class"]["Benign"]["f1"] == 0.0
    assert never["macro"]["precision"] == pytest.approx(np.mean([1 / 2, 0, 1]))
    # an absent class predicted anyway: precision 0, sensitivity none, left out of the macro means
    absent = table1(confusion(np.array([0, 0]), np.array([0, 2])))
    assert absent["per_class"]["Malignant"]["precision"] == 0.0 and absent["per_class"]["Malignant"]["sensitivity"] is None
    assert absent["macro"]["precision"] == pytest.approx(1.0) and absent["macro"]["sensitivity"] == pytest.approx(1 / 2)


def test_table1_agrees_with_scikit_learn_where_every_class_is_present():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(50):
        y, p = rng.integers(0, 3, 40), rng.integers(0, 3, 40)
        y[:3] = [0, 1, 2]
        t = table1(confusion(y, p))
        pr, rc, f1, _ = metrics.precision_recall_fscore_support(y, p, labels=[0, 1, 2], zero_division=0)
        assert t["macro"]["precision"] == pytest.approx(pr.mean()) and t["macro"]["recall"] == pytest.approx(rc.mean())
        assert t["macro"]["f1"] == pytest.approx(f1.mean())


def test_pointing_game_relevance_mass_and_rank():
    from gradfaith_tui.metrics.localization import pointing_game, relevance_mass, relevance_rank

    cam = np.zeros((2, 4, 4))
    cam[:, 0, 0] = 1.0  # hottest pixel top-left
    cam[:, 1, 1] = 0.5
    cam[:, 3, 3] = 0.5
    mask = np.zeros((2, 4, 4), bool)
    mask[0, :2, :2] = True  # contains the peak and one other warm pixel
    mask[1, 3, 3] = True
    assert pointing_game(cam, mask).tolist() == [1.0, 0.0]
    assert relevance_mass(cam, mask).tolist() == pytest.approx([1.5 / 2.0, 0.5 / 2.0])
    # K = mask area: 4 hottest pixels of case 0 are (0,0), (1,1), (3,3) and one zero pixel
    assert relevance_rank(cam, mask)[1] == 0.0 or relevance_rank(cam, mask)[1] == 1.0
    assert np.isnan(pointing_game(cam, np.zeros((2, 4, 4), bool))).all()


def test_batched_metrics_match_per_case_references_on_random_maps():
    from scipy.ndimage import distance_transform_edt

    from gradfaith_tui.metrics.localization import (_kth_largest, heat_share, pointing_game, relevance_mass,
                                                    relevance_rank)

    rng = np.random.default_rng(3)
    maps = rng.random((12, 32, 32)).astype(np.float32)
    masks = np.zeros((12, 32, 32), bool)
    for i in range(11):  # the last case has no mask
        y, x, r = rng.integers(4, 28, 2).tolist() + [int(rng.integers(1, 6))]
        masks[i, max(0, y - r):y + r, max(0, x - r):x + r] = True
    tol = 3 / 32
    want = []
    for m, k in zip(maps, masks):
        peak = np.unravel_index(m.argmax(), m.shape)
        want.append(float(distance_transform_edt(~k)[peak] <= tol * 32) if k.any() else np.nan)
    np.testing.assert_array_equal(pointing_game(maps, masks, tol).numpy(), np.array(want, np.float32))
    mass = [(m * k).sum() / m.sum() for m, k in zip(maps, masks)]
    np.testing.assert_allclose(relevance_mass(maps, masks).numpy()[:11], mass[:11], rtol=1e-5)
    np.testing.assert_allclose(heat_share(maps, masks).numpy(), mass, rtol=1e-5)
    # The GPU's sort and the CPU's partial selection find the same K-th values; ranks match a plain top-K count.
    m, k = torch.from_numpy(maps).flatten(1), torch.from_numpy(masks).flatten(1)
    area = k.sum(1).clamp(min=1)
    assert torch.equal(_kth_largest(m, area, sort=True), _kth_largest(m, area, sort=False))
    rank = [k_[np.argsort(-m_)[:a]].mean() for m_, k_, a in zip(m.numpy(), k.numpy(), k.sum(1).numpy()) if a]
    np.testing.assert_allclose(relevance_rank(maps, masks).numpy()[:11], rank, rtol=1e-6)


def test_flat_maps_point_nowhere_and_ties_favour_no_place():
    from gradfaith_tui.metrics.localization import pointing_game, relevance_mass, relevance_rank

    mask = np.zeros((2, 8, 8), bool)
    mask[:, :2, :2] = True  # a lesion in the corner argmax would pick for a flat map
    for flat in (np.zeros((2, 8, 8)), np.full((2, 8, 8), 0.3)):
        assert pointing_game(flat, mask).tolist() == [0.0, 0.0]
        assert relevance_rank(flat, mask).tolist() == pytest.approx([4 / 64] * 2)  # chance, whatever the order
        assert relevance_mass(flat, mask).tolist() == pytest.approx([4 / 64] * 2)
        assert loc_acc(flat, mask).tolist() == [0.0, 0.0] and mask_iou(flat, mask).tolist() == [0.0, 0.0]
    plateau = np.zeros((1, 8, 8))
    plateau[0, :4, :4] = 1.0  # 16 pixels tied at the top, 4 of them in the lesion; K = 4
    assert relevance_rank(plateau, mask[:1]).tolist() == pytest.approx([4 / 16])
    zero, spot = np.zeros((1, 4, 4)), np.zeros((1, 4, 4))
    spot[0, 1, 1] = 1
    assert np.isnan(consist([zero, zero])).all()  # two flat maps agree on nothing, not perfectly
    assert consist([spot, zero]).tolist() == [0.0]
    assert consist([spot, spot, zero]).tolist() == [0.5] and consist([zero, spot, zero]).tolist() == [0.0]


def test_shortcut_evidence_on_a_phantom_with_a_marker():
    from gradfaith_tui.data.phantom import PhantomConfig, generate
    from gradfaith_tui.metrics.shortcuts import body_mask, heat_evidence, lung_mask, suspect_reasons

    sl = next(generate(PhantomConfig(n_patients=1, slices_per_patient=1, size=64, balance=(0, 0, 1),
                                     shortcut_class=2, shortcut_rate=1.0)))
    body = body_mask(sl.image)
    lungs = lung_mask(sl.image, body)
    assert 0.25 < body.mean() < 0.6 and 0.05 < lungs.mean() < 0.3
    assert not (lungs & ~body).any()
    corners = np.zeros((64, 64))
    corners[:3, :3] = corners[-3:, -3:] = 1.0  # heat where a burned-in marker would sit (band: 3 px at 64)
    ev = heat_evidence(corners, sl.image)
    assert ev["border_heat"] == pytest.approx(1.0) and ev["outside_body_heat"] == pytest.approx(1.0)
    reasons = suspect_reasons(ev)
    assert ("border", 1.0, "100% of heat in the image border band") in reasons
    on_lesion = sl.mask.astype(float)
    assert suspect_reasons(heat_evidence(on_lesion, sl.image)) == []


def test_planted_shortcut_ground_truth_drop_flip_and_heat():
    from gradfaith_tui.cam.fast_gradcam import Explained
    from gradfaith_tui.metrics.per_case import batch_metrics

    class LooksAtTheCorner(torch.nn.Module):  # Malignant exactly when the top-left corner is bright
        def forward(self, x):
            corner = x[:, 0, :2, :2].mean(dim=(1, 2))
            return torch.stack([torch.zeros_like(corner), torch.full_like(corner, 0.5), 4 * corner], 1)

    x = torch.zeros(3, 1, 8, 8)
    x[:2, :, :2, :2] = 1.0  # cases 0 and 1 carry the marker
    region = np.zeros((3, 8, 8), bool)
    region[:2, :2, :2] = True  # case 2 has no planted marker
    model = LooksAtTheCorner()
    logits = model(x)
    heat = torch.zeros(3, 8, 8)
    heat[0, :2, :2] = 1.0  # case 0: the map shows the marker
    heat[1, 4:, 4:] = 1.0  # case 1: the map points elsewhere, though the model used the marker
    heat[2, 4:, 4:] = 1.0
    ex = Explained(heat, logits, logits.argmax(1))
    none = np.zeros((3, 8, 8), bool)
    m = batch_metrics(model, x, ex, none, ~none, none, shortcut_regions=region)
    assert m["shortcut_flip"][:2].tolist() == [1.0, 1.0] and np.isnan(m["shortcut_flip"][2])
    assert (m["shortcut_drop"][:2] > 0.5).all()
    assert m["shortcut_heat"][:2].tolist() == [1.0, 0.0] and np.isnan(m["shortcut_heat"][2])
    assert "shortcut_flip" not in batch_metrics(model, x, ex, none, ~none, none)  # no truth: no such metric


def test_body_only_counterfactual_fills_with_the_slices_air_and_catches_a_corner_shortcut():
    from gradfaith_tui.cam.fast_gradcam import Explained
    from gradfaith_tui.metrics.per_case import air_value, batch_metrics
    from gradfaith_tui.metrics.shortcuts import suspect_reasons

    class LooksAtTheCorner(torch.nn.Module):
        def forward(self, x):
            c = x[:, 0, :2, :2].mean(dim=(1, 2))  # bright corner: Malignant; black corner: Normal
            return torch.stack([8 * (0.1 - c), torch.zeros_like(c), 8 * (c - 0.5)], 1)

    x = torch.full((2, 1, 8, 8), 0.25)  # air is mid-grey in a lung window, not black
    x[:, :, 2:6, 2:6] = 0.6  # the body
    x[0, :, :2, :2] = 1.0  # case 0 carries a marker outside the body
    body = np.zeros((2, 8, 8), bool)
    body[:, 2:6, 2:6] = True
    assert air_value(x, torch.from_numpy(~body)).flatten().tolist() == [0.25, 0.25]
    model = LooksAtTheCorner()
    logits = model(x)
    ex = Explained(torch.rand(2, 8, 8), logits, logits.argmax(1))
    m = batch_metrics(model, x, ex, np.zeros((2, 8, 8), bool), body, body)
    assert m["body_only_flip"].tolist() == [1.0, 0.0]  # air leaves case 1 as it was
    blacked = model(remove(x, 1 - torch.from_numpy(body)[:, None].float())).argmax(1)
    assert blacked[1] != ex.targets[1], "black would have flipped it: a new artefact, not a removal"
    assert ("body-only", 1.0) == suspect_reasons({"body_only_flip": 1.0})[0][:2]


@pytest.mark.parametrize("baseline", ["black", "mean"])
def test_one_fused_forward_gives_what_separate_passes_give(baseline):
    """Faith, both counterfactuals and the marker check share one forward; each edit must be judged alone.
    The lungs-only counterfactual fills with Faith's baseline, as the issue defines it."""
    from gradfaith_tui.cam.fast_gradcam import FastGradCAM
    from gradfaith_tui.cam.layers import find
    from gradfaith_tui.cam.methods import upsample
    from gradfaith_tui.config import spec_for
    from gradfaith_tui.metrics.per_case import air_value, batch_metrics, replace
    from gradfaith_tui.models.factory import build

    torch.manual_seed(0)
    model = build(spec_for("resnet10t"), 32).eval()
    x = torch.rand(4, 1, 32, 32)
    body = np.zeros((4, 32, 32), bool)
    body[:, 4:28, 4:28] = True
    lungs = np.zeros_like(body)
    lungs[:, 8:24, 8:24] = True
    region = np.zeros_like(body)
    region[1, :3, :3] = region[3, :4, -4:] = True  # two of four slices carry a marker
    with FastGradCAM(model, find(model.net)) as f:
        ex = f(x)
    m = batch_metrics(model, x, ex, lungs, body, lungs, baseline=baseline, shortcut_regions=region)
    with torch.no_grad():
        drop, logit_drop = faith(model, x, ex.logits, upsample(ex.maps, 32), ex.targets, baseline)
        air = air_value(x, torch.from_numpy(~body & ~region))
        lungs_only = model(remove(x, 1 - torch.from_numpy(lungs)[:, None].float(), baseline)).argmax(1)
        body_only = model(replace(x, torch.from_numpy(~body), air)).argmax(1)
        painted = torch.softmax(model(replace(x[[1, 3]], torch.from_numpy(region[[1, 3]]), air[[1, 3]])), 1)
    pred = ex.logits.argmax(1)
    np.testing.assert_allclose(m["faith"], drop.numpy(), atol=1e-5)
    np.testing.assert_allclose(m["faith_logit"], logit_drop.numpy(), atol=1e-4)
    assert m["lungs_only_flip"].tolist() == (lungs_only != pred).float().tolist()
    assert m["body_only_flip"].tolist() == (body_only != pred).float().tolist()
    clean = torch.softmax(ex.logits, 1)[[1, 3], pred[[1, 3]]]
    np.testing.assert_allclose(m["shortcut_drop"][[1, 3]], (clean - painted[[0, 1], pred[[1, 3]]]).numpy(), atol=1e-5)
    assert np.isnan(m["shortcut_drop"][[0, 2]]).all()


def test_stager_gathers_rows_and_keeps_the_previous_batch_while_staging_the_next():
    from gradfaith_tui.metrics.staging import Stager

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 6, 6), dtype=np.uint8)
    masks, body, lungs = images > 100, images > 20, images > 200
    regions = np.zeros_like(masks)
    regions[[2, 5], :2, :2] = True
    labels = np.arange(7) % 3
    stage = Stager(images, masks, body, lungs, regions, labels, batch=3, device="cpu")
    a = stage(np.array([0, 1, 2]))
    b = stage(np.array([5, 6]))  # the last, short batch
    for s, idx in ((a, [0, 1, 2]), (b, [5, 6])):  # staging b left a whole: the caller still reads it
        torch.testing.assert_close(s.x[:, 0], torch.from_numpy(images[idx]).float() / 255)
        for got, want in ((s.masks, masks), (s.body, body), (s.lungs, lungs), (s.regions, regions)):
            assert torch.equal(got, torch.from_numpy(want[idx]))
        assert s.labels.tolist() == labels[idx].tolist()
    assert a.marked.tolist() == [2] and a.marked_on_device.tolist() == [2]
    assert b.marked.tolist() == [0] and b.marked_on_device.tolist() == [0]
    plain = Stager(images, masks, body, lungs, None, None, batch=3, device="cpu")(np.array([4]))
    assert plain.regions is None and plain.labels is None and len(plain.marked) == 0


def test_lungs_only_counterfactual_fills_with_faiths_baseline():
    from gradfaith_tui.cam.fast_gradcam import Explained
    from gradfaith_tui.metrics.per_case import batch_metrics

    class LooksAtTheCorner(torch.nn.Module):  # Malignant while the top-left corner stays bright
        def forward(self, x):
            c = x[:, 0, :2, :2].mean(dim=(1, 2))
            return torch.stack([torch.zeros_like(c), torch.full_like(c, 0.1), 4 * (c - 0.3)], 1)

    x = torch.full((1, 1, 8, 8), 0.5)
    lungs = np.zeros((1, 8, 8), bool)
    lungs[:, 2:6, 2:6] = True
    model = LooksAtTheCorner()
    logits = model(x)
    ex = Explained(torch.rand(1, 8, 8), logits, logits.argmax(1))
    flip = {b: batch_metrics(model, x, ex, lungs, ~lungs, lungs, baseline=b)["lungs_only_flip"][0] for b in ("black", "mean")}
    assert flip == {"black": 1.0, "mean": 0.0}  # black darkens the corner; the image's mean keeps it as it was


def test_the_shuffled_control_keeps_each_maps_values_at_other_places_the_same_each_run():
    import torch

    from gradfaith_tui.metrics.faithfulness import shuffled

    maps = torch.rand(3, 4, 4)
    a, b = shuffled(maps, [7, 8, 9]), shuffled(maps, [7, 8, 9])
    assert torch.equal(a, b)  # seeded: a rerun stores the same control
    for m, s in zip(maps, a):
        assert torch.equal(m.flatten().sort().values, s.flatten().sort().values)  # the same values: the same area
    assert not torch.equal(a, maps)
    # a case's control does not depend on its batch: the case at row 0 here was at row 2 above (another batch
    # size, or another torchrun rank's shard)
    assert torch.equal(shuffled(maps[2:], [9])[0], a[2]) and not torch.equal(shuffled(maps[2:])[0], a[2])
    draws = [shuffled(maps, [7, 8, 9], seed=k) for k in range(4)]  # the control's draws differ from each other
    assert all(not torch.equal(draws[i], draws[j]) for i in range(4) for j in range(i))
