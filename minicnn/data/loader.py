"""DataLoader: mini-batches of (images, labels) as minicnn Tensors, reproducibly.

    loader = DataLoader(train_set, batch_size=64, shuffle=True, seed=0)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for images, labels in loader:      # (N, C, H, W) float32, (N,) int64
                                           # (multi-label data: (N, K) float32 0/1)
            ...

Where the randomness comes from, and why it is split this way: the order of epoch e
is drawn from a Generator seeded with (seed, e), and the augmentation of batch b of
that epoch from one seeded with (seed, e, b). Nothing carries over from one epoch or
batch to the next, so a run stopped after batch b and resumed from batch b + 1 sees
exactly the batches an uninterrupted run would have seen.

Each batch is made in this order, all from that batch's Generator: the dataset's own
per-image transform (dataset.get_batch / get), then `batch_transform` on the stacked
batch (e.g. batch_augment.BatchCompose([BatchRandomAffine(...), BatchNormalize(...)])).
Normalisation belongs at the end of whichever comes last, after the augmentation.
"""
import math

import numpy as np

from ..tensor import Tensor


class DataLoader:
    """Batches of `dataset` (anything with __len__ and get_batch(indices, rng) or get(i, rng)).

    batch_size: images per batch; shuffle: a new order every epoch; seed: see the module
    docstring; drop_last: skip a last, smaller batch; sampler: an object with
    indices(rng) -> index array and __len__ (e.g. WeightedRandomSampler), used instead
    of shuffling; device: where the Tensors are made; batch_transform: None or a
    callable t(images (N, C, H, W) float32, rng) -> (N, C, H, W), applied to each batch
    after the per-image transforms, with the same per-batch Generator.
    """

    def __init__(self, dataset, batch_size=32, shuffle=False, seed=0, drop_last=False,
                 sampler=None, device="cpu", batch_transform=None):
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got {batch_size!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: give either shuffle=True or a sampler, not both "
                             "(the sampler decides the order)")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        if batch_transform is not None and not callable(batch_transform):
            raise ValueError(f"DataLoader: batch_transform must be None or a callable "
                             f"t(images, rng), got {batch_transform!r}")
        self.sampler, self.device = sampler, device
        self.batch_transform = batch_transform
        self.epoch = 0

    def set_epoch(self, epoch):
        """Choose the epoch whose order and augmentation the next iteration gives."""
        self.epoch = int(epoch)

    def _num_samples(self):
        return len(self.sampler) if self.sampler is not None else len(self.dataset)

    def __len__(self):
        n = self._num_samples()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def order(self, epoch=None):
        """The sample indices of an epoch, in the order they are served."""
        epoch = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng([self.seed, epoch])
        if self.sampler is not None:
            return np.asarray(self.sampler.indices(rng), dtype=np.int64)
        n = len(self.dataset)
        return rng.permutation(n) if self.shuffle else np.arange(n)

    def batches(self, epoch=None, start=0):
        """Iterate over the batches of an epoch, beginning at batch number `start`."""
        epoch = self.epoch if epoch is None else int(epoch)
        order = self.order(epoch)
        for b in range(int(start), len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            rng = np.random.default_rng([self.seed, epoch, b])
            images, labels = self._fetch(idx, rng)
            if self.batch_transform is not None:
                images = self._transform_batch(images, rng)
            labels = np.asarray(labels)
            # class numbers (N,) int64; multi-label targets (N, K) stay float32 (0/1)
            kind = np.float32 if labels.dtype.kind == "f" else np.int64
            yield (Tensor(images, device=self.device),
                   Tensor(labels.astype(kind, copy=False), device=self.device))

    def _transform_batch(self, images, rng):
        out = self.batch_transform(images, rng)
        if isinstance(out, Tensor):
            out = out.numpy()
        shape = getattr(out, "shape", None)
        if not isinstance(out, np.ndarray) or out.ndim != 4 or shape[0] != images.shape[0]:
            raise ValueError(f"DataLoader: batch_transform {self.batch_transform!r} must "
                             f"return (N, C, H, W) images for a batch of {images.shape}, "
                             f"got {shape if shape is not None else type(out).__name__}")
        return out.astype(np.float32, copy=False)

    def _fetch(self, idx, rng):
        if hasattr(self.dataset, "get_batch"):
            return self.dataset.get_batch(idx, rng)
        pairs = [self.dataset.get(int(i), rng) for i in idx]
        return (np.stack([p[0] for p in pairs]).astype(np.float32, copy=False),
                np.array([p[1] for p in pairs], dtype=np.int64))

    def __iter__(self):
        return self.batches()
