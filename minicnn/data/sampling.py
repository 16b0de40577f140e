"""Class imbalance: when one class far outnumbers the other (PneumoniaMNIST's training
split is 74% pneumonia), a network can score well by favouring it. Three remedies:

  class weights    weight the loss of each class inversely to its frequency:
                   w_k = N / (K * n_k)   (N samples, K classes, n_k in class k), so that
                   sum_k n_k w_k = N: the loss keeps its scale and every class carries
                   the same total weight. Pass them to cross_entropy(weight=...).
  re-sampling      WeightedRandomSampler draws N samples with replacement, each with
                   probability proportional to 1 / n_(its class): balanced batches.
  over/under       OverSampler repeats minority samples (randomly) until every class
                   has as many as the largest; UnderSampler keeps a random subset of
                   each class as large as the smallest.

Every sampler has indices(rng) -> index array (one epoch) and __len__, as the
DataLoader wants; all randomness comes from the Generator passed in.
"""
import numpy as np


def class_counts(labels, num_classes=None):
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    k = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    return np.bincount(labels, minlength=k)


def class_weights(labels, num_classes=None):
    """(K,) float32 inverse-frequency weights w_k = N / (K * n_k); 0 for an absent class."""
    counts = class_counts(labels, num_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros_like(counts)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w.astype(np.float32)


class WeightedRandomSampler:
    """num_samples indices drawn with probability proportional to weights (one per sample)."""

    def __init__(self, weights, num_samples=None, replacement=True):
        self.weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        if self.weights.size == 0 or (self.weights < 0).any() or self.weights.sum() <= 0:
            raise ValueError("WeightedRandomSampler: weights must be non-negative, not all zero")
        self.num_samples = self.weights.size if num_samples is None else int(num_samples)
        self.replacement = bool(replacement)
        if not self.replacement and self.num_samples > np.count_nonzero(self.weights):
            raise ValueError("WeightedRandomSampler: without replacement, num_samples cannot "
                             "exceed the number of samples with non-zero weight")

    def __len__(self):
        return self.num_samples

    def indices(self, rng):
        p = self.weights / self.weights.sum()
        return rng.choice(self.weights.size, size=self.num_samples, replace=self.replacement, p=p)


def balanced_sampler(labels, num_samples=None):
    """A WeightedRandomSampler giving every class the same expected share of each epoch."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    counts = class_counts(labels)
    return WeightedRandomSampler(1.0 / counts[labels], num_samples or labels.size)


class OverSampler:
    """Every class repeated up to the size of the largest: all of each class, plus random
    extra copies of the smaller ones; shuffled."""

    def __init__(self, labels):
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        self.counts = class_counts(self.labels)

    def __len__(self):
        return int(self.counts.max() * np.count_nonzero(self.counts))

    def indices(self, rng):
        target = self.counts.max()
        parts = []
        for k in np.flatnonzero(self.counts):
            members = np.flatnonzero(self.labels == k)
            extra = rng.choice(members, size=target - members.size, replace=True)
            parts += [members, extra]
        return rng.permutation(np.concatenate(parts))


class UnderSampler:
    """A random subset of every class, each as large as the smallest; shuffled."""

    def __init__(self, labels):
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        self.counts = class_counts(self.labels)

    def __len__(self):
        present = self.counts[self.counts > 0]
        return int(present.min() * present.size)

    def indices(self, rng):
        target = self.counts[self.counts > 0].min()
        parts = [rng.choice(np.flatnonzero(self.labels == k), size=target, replace=False)
                 for k in np.flatnonzero(self.counts)]
        return rng.permutation(np.concatenate(parts))
