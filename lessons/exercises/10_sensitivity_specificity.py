"""Exercise 10 - sensitivity and specificity                                  (lesson 09)

Accuracy hides what matters to a clinician. With pneumonia as the positive class (1)
and normal as the negative class (0), count

    TP  pneumonia called pneumonia        FN  pneumonia called normal  (a missed case)
    TN  normal called normal              FP  normal called pneumonia  (a false alarm)

    sensitivity = TP / (TP + FN)    of the sick, the share we catch      (recall)
    specificity = TN / (TN + FP)    of the healthy, the share we clear

A screening test wants high sensitivity: a missed pneumonia goes home untreated.

Shapes: y_true (N,), y_pred (N,) ints in {0, 1} -> (sensitivity, specificity) floats.
For the threshold: scores (N,) floats in [0, 1]; predict 1 where score >= threshold.

Check your answer:   minicnn grade 10
"""
import numpy as np


def sensitivity_specificity(y_true, y_pred):
    """y_true (N,), y_pred (N,) in {0, 1} -> (sensitivity, specificity)"""
    # TODO: count TP, FN, TN, FP with boolean masks, then the two ratios.
    raise NotImplementedError("sensitivity_specificity")


def threshold_for_sensitivity(y_true, scores, target):
    """The LARGEST threshold t (one of the scores) whose predictions (scores >= t) reach
    sensitivity >= target. y_true (N,) in {0,1}, scores (N,) floats, target in (0, 1]."""
    # TODO: try the distinct scores from the largest down; return the first that
    #       reaches the target sensitivity (use sensitivity_specificity).
    raise NotImplementedError("threshold_for_sensitivity")
