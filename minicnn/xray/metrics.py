"""How good is a classifier? The numbers a clinician asks for, in plain numpy.

For a binary test ("pneumonia" is the positive class), with a decision threshold t
(predict positive when P(positive) >= t) the four counts are

    TP  positive, predicted positive      FN  positive, predicted negative (a missed case)
    FP  negative, predicted positive      TN  negative, predicted negative

    accuracy    = (TP + TN) / all
    sensitivity = TP / (TP + FN)     recall of the positive class: share of sick found
    specificity = TN / (TN + FP)     share of healthy correctly cleared
    precision   = TP / (TP + FP)     positive predictive value
    f1          = 2 * precision * sensitivity / (precision + sensitivity)

The ROC curve plots sensitivity (true positive rate) against 1 - specificity (false
positive rate) as t sweeps from +inf down to the lowest score. Its area, ROC-AUC, is
the probability that a random positive scores above a random negative (ties count
one half); it does not depend on t. Here it is computed from ranks (Mann-Whitney):

    AUC = (R_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)

with R_pos the sum of the positives' ranks among all scores, tied scores sharing
the average of their ranks.
"""
import numpy as np


def _labels_scores(y_true, scores, op):
    y = np.asarray(y_true).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"{op}: {y.size} labels but {s.size} scores")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError(f"{op}: labels must be 0 (negative) or 1 (positive), "
                         f"got values {np.unique(y)[:5].tolist()}")
    if np.isnan(s).any():
        raise ValueError(f"{op}: {int(np.isnan(s).sum())} scores are NaN")
    return y.astype(np.int64), s


def _ratio(num, den):
    """num / den, or NaN when den is 0 (e.g. sensitivity with no positive cases)."""
    return float(num) / float(den) if den else float("nan")


def confusion_matrix(y_true, y_pred, num_classes=2):
    """cm[i, j] = how many samples of true class i were predicted as class j.

    y_true, y_pred (N,) integers in [0, num_classes) -> (num_classes, num_classes) int64
    """
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"confusion_matrix: {y_true.size} labels but {y_pred.size} predictions")
    for name, v in (("labels", y_true), ("predictions", y_pred)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"confusion_matrix: {name} must be in [0, {num_classes - 1}]")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def average_ranks(values):
    """Ranks 1..N of `values` (ascending), tied values sharing the mean of their ranks.

    values (N,) -> (N,) float64; e.g. [10, 20, 20, 30] -> [1, 2.5, 2.5, 4]
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    order = np.argsort(v, kind="mergesort")
    sorted_v = v[order]
    # a new group of equal values starts wherever the sorted value changes
    starts = np.flatnonzero(np.r_[True, sorted_v[1:] != sorted_v[:-1]])
    ends = np.r_[starts[1:], v.size]                       # one past each group's end
    mean_rank = (starts + 1 + ends) / 2.0                  # mean of ranks starts+1 .. ends
    ranks = np.empty(v.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_auc(y_true, scores):
    """Area under the ROC curve from ranks (see the module docstring).

    y_true (N,) 0/1, scores (N,) higher = more likely positive -> float in [0, 1].
    NaN when only one class is present (the area is undefined).
    """
    y, s = _labels_scores(y_true, scores, "roc_auc")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r_pos = average_ranks(s)[y == 1].sum()
    return float((r_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(y_true, scores):
    """Points of the ROC curve, one per distinct score, from (0, 0) to (1, 1).

    y_true (N,) 0/1, scores (N,) -> (fpr, tpr, thresholds), each (M,) float64, with
    thresholds decreasing: point k is what "positive when score >= thresholds[k]"
    gives. thresholds[0] = +inf (nothing called positive).
    """
    y, s = _labels_scores(y_true, scores, "roc_curve")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # the last position of each run of equal scores: where the curve can turn
    last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    n_pos, n_neg = int(y.sum()), y.size - int(y.sum())
    tpr = np.r_[0.0, tp / n_pos if n_pos else np.zeros(tp.size)]
    fpr = np.r_[0.0, fp / n_neg if n_neg else np.zeros(fp.size)]
    thresholds = np.r_[np.inf, s_sorted[last]]
    return fpr, tpr, thresholds


def youden_threshold(y_true, scores):
    """The threshold that maximises Youden's J = sensitivity + specificity - 1.

    Chosen on validation data, it balances missed cases against false alarms.
    Among equal J the higher threshold wins (fewer false alarms). Returns 0.5
    when only one class is present (J is undefined).
    """
    y, s = _labels_scores(y_true, scores, "youden_threshold")
    if y.sum() == 0 or y.sum() == y.size:
        return 0.5
    fpr, tpr, thresholds = roc_curve(y, s)
    j = tpr - fpr
    k = int(np.argmax(j[1:])) + 1  # skip the +inf point: it calls nothing positive
    return float(thresholds[k])


def binary_metrics(y_true, scores, threshold=0.5):
    """Everything in the module docstring at one threshold, as a dict of plain floats.

    y_true (N,) 0/1; scores (N,) P(positive) -> {"accuracy", "auc", "sensitivity",
    "specificity", "precision", "f1", "threshold", "tp", "fp", "tn", "fn", "n"}
    (NaN where a ratio has nothing to divide by).
    """
    y, s = _labels_scores(y_true, scores, "binary_metrics")
    pred = (s >= threshold).astype(np.int64)
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    sens = _ratio(tp, tp + fn)
    prec = _ratio(tp, tp + fp)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)  # = 2PR/(P+R), and defined when only one is
    return {
        "accuracy": _ratio(tp + tn, y.size),
        "auc": roc_auc(y, s),
        "sensitivity": sens,
        "specificity": _ratio(tn, tn + fp),
        "precision": prec,
        "f1": f1,
        "threshold": float(threshold),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn, "n": int(y.size),
    }


def multiclass_metrics(y_true, probs):
    """For more than two classes: accuracy of the arg-max, and the mean one-vs-rest AUC.

    y_true (N,) in [0, K), probs (N, K) -> {"accuracy", "auc", "n"}
    """
    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64)
    aucs = [roc_auc((y == k).astype(np.int64), p[:, k]) for k in range(p.shape[1])]
    aucs = [a for a in aucs if not np.isnan(a)]
    return {"accuracy": _ratio(int((p.argmax(axis=1) == y).sum()), y.size),
            "auc": float(np.mean(aucs)) if aucs else float("nan"), "n": int(y.size)}


def multilabel_metrics(y_true, probs, names, thresholds=None):
    """Per-finding metrics of multi-label scores: each finding is its own binary test.

    y_true (N, K) 0/1, probs (N, K) P(finding present), names (K,); thresholds (K,) or
    None (then each finding's Youden threshold on these data, as the binary path does)
    -> {"per_label": {name: {"auc", "sensitivity", "specificity", "threshold",
        "n_positive"}}, "mean_auc" (over findings whose AUC is defined), "auc" (the same),
        "n"}
    """
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    if y.ndim != 2 or y.shape != p.shape or y.shape[1] != len(names):
        raise ValueError(f"multilabel_metrics: labels {y.shape}, scores {p.shape} and "
                         f"{len(names)} names do not match")
    per_label = {}
    for k, name in enumerate(names):
        yk = (y[:, k] > 0.5).astype(np.int64)
        t = youden_threshold(yk, p[:, k]) if thresholds is None else float(thresholds[k])
        m = binary_metrics(yk, p[:, k], t)
        per_label[name] = {"auc": m["auc"], "sensitivity": m["sensitivity"],
                           "specificity": m["specificity"], "threshold": m["threshold"],
                           "n_positive": int(yk.sum())}
    aucs = [v["auc"] for v in per_label.values() if np.isfinite(v["auc"])]
    mean = float(np.mean(aucs)) if aucs else float("nan")
    return {"per_label": per_label, "mean_auc": mean, "auc": mean, "n": int(y.shape[0])}


def json_safe(value):
    """`value` with NaN and infinities replaced by None, so json.dump writes valid JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
