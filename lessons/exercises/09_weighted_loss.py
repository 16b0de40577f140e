"""Exercise 09 - a class-weighted loss for an imbalanced data set             (lesson 07)

The PneumoniaMNIST training set holds about three pneumonia images for every normal
one. A network can score 74% by always answering "pneumonia". Weighting the loss
of each class by the inverse of its frequency makes every class count the same:

    count[k]   = how many labels equal k
    weight[k]  = N / (K * count[k])          ("balanced": a class of average size gets 1)

and the weighted cross-entropy (as minicnn.functional.cross_entropy and PyTorch do it):

    loss = sum_n weight[t_n] * (-log p[n, t_n])  /  sum_n weight[t_n]

(divide by the total weight, not by N, so the loss stays a weighted average).
p is the softmax of the logits (exercise 06).

Shapes: labels (N,) ints in [0, K); logits (N, K); target (N,) ints; weight (K,)
        -> class_weights: (K,) floats;  weighted_cross_entropy: a float

Check your answer:   minicnn grade 09
"""
import numpy as np


def class_weights(labels, num_classes):
    """labels (N,) ints in [0, K) -> weight (K,) = N / (K * count[k])"""
    # TODO: count each class (np.bincount with minlength), then the formula above.
    raise NotImplementedError("class_weights")


def weighted_cross_entropy(logits, target, weight):
    """logits (N,K), target (N,) ints, weight (K,) -> the weighted mean loss (a float)"""
    # TODO: stable log-softmax, pick -log p[n, t_n], weight it, divide by the total weight.
    raise NotImplementedError("weighted_cross_entropy")
