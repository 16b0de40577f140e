"""Exercise 10 - sensitivity and specificity: reference solution.             (lesson 09)

    sensitivity = TP / (TP + FN),  specificity = TN / (TN + FP)
"""
import numpy as np


def sensitivity_specificity(y_true, y_pred):
    """y_true (N,), y_pred (N,) in {0, 1} -> (sensitivity, specificity)"""
    sick, called = (y_true == 1), (y_pred == 1)
    tp = np.sum(sick & called)
    fn = np.sum(sick & ~called)
    tn = np.sum(~sick & ~called)
    fp = np.sum(~sick & called)
    return tp / (tp + fn), tn / (tn + fp)


def threshold_for_sensitivity(y_true, scores, target):
    """The largest threshold t (one of the scores) with sensitivity(scores >= t) >= target."""
    for t in np.unique(scores)[::-1]:                  # largest first
        sens, _ = sensitivity_specificity(y_true, (scores >= t).astype(int))
        if sens >= target:
            return float(t)
    return float(scores.min())
