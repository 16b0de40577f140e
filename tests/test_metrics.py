"""Metrics against hand-computed cases and against their definitions written out pair by pair."""
import json
import math

import numpy as np
import pytest

from minicnn.xray import metrics


def close(got, want, atol=1e-12, rtol=1e-12, what="value"):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    err = np.abs(got - want) - (atol + rtol * np.abs(want))
    if err.size and err.max() > 0:
        k = int(np.argmax(err))
        raise AssertionError(f"{what}: element {k}: got {got.flat[k]!r}, want {want.flat[k]!r}")


def auc_by_pairs(y, s):
    """P(score of a random positive > score of a random negative), ties one half."""
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def test_average_ranks_share_ties():
    close(metrics.average_ranks([10, 20, 20, 30]), [1, 2.5, 2.5, 4], what="ranks")
    close(metrics.average_ranks([3, 1, 2]), [3, 1, 2], what="ranks")
    close(metrics.average_ranks([5, 5, 5]), [2, 2, 2], what="ranks")


def test_auc_hand_computed():
    y = [0, 0, 1, 1]
    assert metrics.roc_auc(y, [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75, abs=1e-12)
    # positives 0.5 and 0.9 against negatives 0.2 and 0.5: 1 + 0.5 + 1 + 1 out of 4 pairs
    assert metrics.roc_auc(y, [0.2, 0.5, 0.5, 0.9]) == pytest.approx(0.875, abs=1e-12)
    assert metrics.roc_auc([0, 1, 0, 1], [0.5] * 4) == pytest.approx(0.5, abs=1e-12)
    assert metrics.roc_auc(y, [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert metrics.roc_auc(y, [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert math.isnan(metrics.roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pairwise_definition(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1
    s = rng.integers(0, 6, n) / 5.0  # few distinct values: many ties
    assert metrics.roc_auc(y, s) == pytest.approx(auc_by_pairs(y, s), abs=1e-12)


def test_roc_curve_hand_computed():
    fpr, tpr, thr = metrics.roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    close(fpr, [0, 0, 0.5, 0.5, 1], what="fpr")
    close(tpr, [0, 0.5, 0.5, 1, 1], what="tpr")
    assert thr[0] == np.inf
    close(thr[1:], [0.8, 0.4, 0.35, 0.1], what="thresholds")


@pytest.mark.parametrize("seed", range(3))
def test_roc_curve_area_is_auc(seed):
    rng = np.random.default_rng(seed)
    y = np.r_[0, 1, rng.integers(0, 2, 40)]
    s = rng.integers(0, 8, y.size) / 7.0
    fpr, tpr, _ = metrics.roc_curve(y, s)
    area = float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids
    assert area == pytest.approx(metrics.roc_auc(y, s), abs=1e-12)


def test_confusion_matrix_hand_computed():
    cm = metrics.confusion_matrix([0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 0, 2], num_classes=3)
    assert cm.tolist() == [[1, 1, 0], [1, 2, 0], [0, 0, 1]]
    with pytest.raises(ValueError, match="predictions"):
        metrics.confusion_matrix([0, 1], [0, 2], num_classes=2)


def test_binary_metrics_hand_computed():
    # threshold 0.5: predictions 1 1 0 0 1 0 0 1 against labels 1 1 1 0 0 0 0 1
    y = [1, 1, 1, 0, 0, 0, 0, 1]
    s = [0.9, 0.6, 0.4, 0.2, 0.7, 0.1, 0.3, 0.5]
    m = metrics.binary_metrics(y, s, threshold=0.5)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 1, 1, 3)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["sensitivity"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(3 / 4)
    # the positives' ranks are 8, 6, 4, 5: AUC = (23 - 10) / 16
    assert m["auc"] == pytest.approx(13 / 16)
    m = metrics.binary_metrics(y, s, threshold=0.45)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 1, 1, 3)
    m = metrics.binary_metrics(y, s, threshold=0.35)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (4, 0, 1, 3)
    assert m["precision"] == pytest.approx(4 / 5)
    assert m["f1"] == pytest.approx(2 * 0.8 * 1.0 / 1.8)


def test_binary_metrics_undefined_ratios_are_nan_and_json_null():
    m = metrics.binary_metrics([0, 0], [0.1, 0.2], threshold=0.5)
    assert math.isnan(m["sensitivity"]) and math.isnan(m["precision"]) and math.isnan(m["auc"])
    assert m["specificity"] == 1.0
    text = json.dumps(metrics.json_safe(m), allow_nan=False)
    assert json.loads(text)["sensitivity"] is None


def test_youden_threshold_hand_computed():
    # J: 0.8 -> 0.5, 0.4 -> 0.0, 0.35 -> 0.5, 0.1 -> 0.0; equal J: the higher threshold
    assert metrics.youden_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.8
    # a clean split: the lowest positive score separates the classes
    assert metrics.youden_threshold([0, 0, 1, 1], [0.1, 0.3, 0.6, 0.9]) == 0.6
    assert metrics.youden_threshold([1, 1], [0.2, 0.3]) == 0.5


@pytest.mark.parametrize("seed", range(3))
def test_youden_threshold_is_the_best_on_the_data(seed):
    rng = np.random.default_rng(seed)
    y = np.r_[0, 1, rng.integers(0, 2, 50)]
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    t = metrics.youden_threshold(y, s)

    def j(th):
        m = metrics.binary_metrics(y, s, th)
        return m["sensitivity"] + m["specificity"] - 1
    assert all(j(t) >= j(u) - 1e-12 for u in np.unique(s)), "another threshold has a higher J"


def test_multiclass_metrics():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.2, 0.3, 0.5]])
    m = metrics.multiclass_metrics([0, 1, 2, 0], p)
    assert m["accuracy"] == pytest.approx(3 / 4)
    # one-vs-rest AUCs by hand: class 0: positives 0.7, 0.2 against 0.1, 0.3 -> 3/4;
    # class 1: 0.8 above all -> 1; class 2: 0.4 against 0.1, 0.1, 0.5 -> 2/3
    assert m["auc"] == pytest.approx((3 / 4 + 1 + 2 / 3) / 3)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="3 labels but 2 scores"):
        metrics.roc_auc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="0 \\(negative\\) or 1"):
        metrics.roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        metrics.binary_metrics([0, 1], [0.1, float("nan")])


def test_multilabel_metrics_score_each_finding_as_its_own_binary_test():
    rng = np.random.default_rng(4)
    y = (rng.random((40, 3)) < 0.4).astype(np.float32)
    y[:, 2] = 0  # no positive case of the third finding: its AUC is undefined
    p = np.clip(y * 0.3 + rng.random((40, 3)) * 0.7, 0, 1)
    m = metrics.multilabel_metrics(y, p, ["a", "b", "c"])
    for k, name in enumerate("ab"):
        row = m["per_label"][name]
        pos, neg = p[y[:, k] == 1, k], p[y[:, k] == 0, k]
        pairs = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        assert row["auc"] == pytest.approx(pairs.mean()), "AUC: P(positive scores higher)"
        # Youden's J by brute force over every score as a threshold; ties: the higher one
        j = {t: (pos >= t).mean() + (neg < t).mean() - 1 for t in np.unique(p[:, k])}
        best = max(j.values())
        assert row["threshold"] == pytest.approx(max(t for t, v in j.items() if v == best))
        pred = p[:, k] >= row["threshold"]
        assert row["sensitivity"] == pytest.approx(pred[y[:, k] == 1].mean())
        assert row["specificity"] == pytest.approx(1 - pred[y[:, k] == 0].mean())
        assert row["n_positive"] == int(y[:, k].sum())
    assert math.isnan(m["per_label"]["c"]["auc"]) and m["per_label"]["c"]["n_positive"] == 0
    assert m["mean_auc"] == pytest.approx((m["per_label"]["a"]["auc"] + m["per_label"]["b"]["auc"]) / 2)
    fixed = metrics.multilabel_metrics(y, p, ["a", "b", "c"], thresholds=[0.2, 0.9, 0.5])
    assert [fixed["per_label"][n]["threshold"] for n in "abc"] == [0.2, 0.9, 0.5]
    assert fixed["per_label"]["b"]["sensitivity"] == pytest.approx((p[y[:, 1] == 1, 1] >= 0.9).mean())
    with pytest.raises(ValueError, match="do not match"):
        metrics.multilabel_metrics(y, p, ["a", "b"])
