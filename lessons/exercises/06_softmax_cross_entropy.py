"""Exercise 06 - softmax cross-entropy and its gradient                        (lesson 06)

A classifier outputs K logits z per image. Softmax turns them into probabilities and
cross-entropy charges -log of the probability given to the true class t:

    p[n, k] = exp(z[n, k]) / sum_j exp(z[n, j])
    loss    = (1/N) sum_n  -log p[n, t_n]

Its gradient is famously simple:

    dloss/dz[n, k] = (p[n, k] - [k == t_n]) / N

Careful: exp(1000) overflows to inf. Subtract each row's maximum from its logits
first; softmax does not change (the factor exp(-max) cancels), and nothing overflows.

Shapes: logits (N, K) floats, target (N,) integers in [0, K)
        -> loss (a float), dlogits (N, K)

Check your answer:   minicnn grade 06
"""
import numpy as np


def softmax_cross_entropy(logits, target):
    """logits (N,K), target (N,) int -> (loss, dlogits (N,K)), mean over the batch"""
    N, K = logits.shape
    # TODO: stable softmax (subtract the row max), the mean of -log p[n, t_n],
    #       then the gradient (p - onehot(target)) / N.
    raise NotImplementedError("softmax_cross_entropy")
