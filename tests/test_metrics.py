import numpy as np
import pytest
import torch

from gradfaith_tui.metrics.consistency import consist
from gradfaith_tui.metrics.faithfulness import faith, remove
from gradfaith_tui.metrics.localization import binarise, iou, loc_acc, mask_iou, normalise
from gradfaith_tui.models.evaluate import confusion, table1


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
