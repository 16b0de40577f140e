"""Exercise 06 - softmax cross-entropy and its gradient: reference solution.  (lesson 06)

    p = softmax(z),  loss = mean_n -log p[n, t_n],  dloss/dz = (p - onehot(t)) / N
"""
import numpy as np


def softmax_cross_entropy(logits, target):
    """logits (N,K), target (N,) int -> (loss, dlogits (N,K)), mean over the batch"""
    N, K = logits.shape
    shifted = logits - logits.max(axis=1, keepdims=True)          # keeps exp() <= 1
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_p[np.arange(N), target].mean()
    grad = np.exp(log_p)
    grad[np.arange(N), target] -= 1.0
    return loss, grad / N
