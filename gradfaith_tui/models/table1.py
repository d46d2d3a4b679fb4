"""The paper's Table I metrics from a confusion matrix: NumPy only, so the torch-free synthetic cache uses it too."""

from __future__ import annotations

import numpy as np

from gradfaith_tui.config import CLASS_NAMES

TABLE1 = ("sensitivity", "specificity", "precision", "recall", "f1", "accuracy")


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def _div(a: float, b: float) -> float | None:
    return float(a / b) if b else None


def table1(cm: np.ndarray) -> dict:
    """Per-class one-vs-rest metrics and their macro means over the classes the test split holds; accuracy
    over all cases. None marks a value that does not exist (shown as –, stored as null): the sensitivity,
    recall and F1 of a class absent from the split (and its precision, where the model never predicts it
    either), and a specificity where the split holds no other class. A class the split holds but the model
    never predicts has precision and F1 0 (scikit-learn's zero_division=0), so the macro means count it
    against the model."""
    total = cm.sum()
    per_class = {}
    for k, name in enumerate(CLASS_NAMES[: cm.shape[0]]):
        tp = cm[k, k]
        support = int(cm[k].sum())
        fp = cm[:, k].sum() - tp
        tn = total - support - fp
        sens = _div(tp, support)
        prec = _div(tp, tp + fp) if tp + fp else (0.0 if support else None)
        f1 = None if sens is None else (_div(2 * prec * sens, prec + sens) or 0.0)
        per_class[name] = {"sensitivity": sens, "specificity": _div(tn, tn + fp), "precision": prec,
                           "recall": sens, "f1": f1, "support": support}
    macro = {}
    for m in TABLE1:
        if m != "accuracy":
            values = [v[m] for v in per_class.values() if v["support"] and v[m] is not None]
            macro[m] = float(np.mean(values)) if values else None
    macro["accuracy"] = _div(np.trace(cm), total)
    return {"macro": macro, "per_class": per_class, "confusion": cm.tolist()}
