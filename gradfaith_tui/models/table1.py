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


def _div(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def table1(cm: np.ndarray) -> dict:
    """Per-class one-vs-rest metrics and their macro means; accuracy over all cases."""
    total = cm.sum()
    per_class = {}
    for k, name in enumerate(CLASS_NAMES[: cm.shape[0]]):
        tp = cm[k, k]
        fn = cm[k].sum() - tp
        fp = cm[:, k].sum() - tp
        tn = total - tp - fn - fp
        sens = _div(tp, tp + fn)
        prec = _div(tp, tp + fp)
        per_class[name] = {"sensitivity": sens, "specificity": _div(tn, tn + fp), "precision": prec,
                           "recall": sens, "f1": _div(2 * prec * sens, prec + sens), "support": int(cm[k].sum())}
    macro = {m: float(np.mean([v[m] for v in per_class.values()])) for m in TABLE1 if m != "accuracy"}
    macro["accuracy"] = _div(np.trace(cm), total)
    return {"macro": macro, "per_class": per_class, "confusion": cm.tolist()}
