"""torch.utils.data's names over minicnn's loader: Dataset, DataLoader, samplers, splits.

    from minicnn.utils.data import DataLoader, TensorDataset, random_split
    loader = DataLoader(dataset, batch_size=64, shuffle=True)
    for images, labels in loader:          # a new order each time the loader is iterated
        ...

A dataset is anything with __len__ and __getitem__(i) -> a sample (e.g. (image,
label)); the loader collates samples into Tensors (default_collate). It is the same
machinery the trainer uses (minicnn.data.loader.DataLoader): the order of epoch e is
drawn from a Generator seeded with (seed, e) and batch b's randomness from one seeded
with (seed, e, b), made the engine's generator while the batch is fetched, so the
random transforms of minicnn.data.transforms repeat exactly. The seed comes from
minicnn's own generator when the loader is made (minicnn.manual_seed decides it), or
from `generator` (an int or a numpy Generator).

Loading runs in the calling process: num_workers, pin_memory, persistent_workers are
accepted and change nothing in the results.
"""
import math
from numbers import Integral, Real

import numpy as np

from .. import random as engine_random
from ..data import loader as engine_loader
from ..data import sampling
from ..tensor import Tensor


class Dataset:
    """Base class of map-style data sets: subclasses define __getitem__ and __len__."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")


class TensorDataset(Dataset):
    """Samples are the i-th rows of each tensor: dataset[i] = (t0[i], t1[i], ...)."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: give at least one tensor")
        sizes = {int(t.shape[0]) for t in tensors}
        if len(sizes) != 1:
            raise ValueError(f"TensorDataset: the tensors differ in their first dimension "
                             f"({', '.join(str(tuple(t.shape)) for t in tensors)}); each row is "
                             "one sample, so every tensor needs the same number of rows")
        self.tensors = tuple(t if isinstance(t, Tensor) else Tensor(t) for t in tensors)

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return int(self.tensors[0].shape[0])

    def rows(self, indices):
        """The collated batch for `indices` in one indexing per tensor (the loader's fast path)."""
        return [Tensor._wrap(t.array[indices], device=t.device) for t in self.tensors]


class Subset(Dataset):
    """The samples of `dataset` at `indices`, in that order."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, [int(i) for i in indices]

    def __getitem__(self, index):
        if isinstance(index, (list, tuple, np.ndarray)):
            return [self.dataset[self.indices[int(i)]] for i in index]
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)


def random_split(dataset, lengths, generator=None):
    """Subsets of the given lengths (counts, or fractions that sum to 1), drawn at random.

    Fractions are turned into counts as PyTorch does: floor(n * f) each, then the
    remainder handed out one by one from the first subset on.
    """
    n = len(dataset)
    lengths = list(lengths)
    if lengths and all(isinstance(x, Real) and not isinstance(x, Integral) for x in lengths) \
            and math.isclose(sum(lengths), 1.0) and sum(lengths) <= 1.0 + 1e-9:
        counts = [int(math.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if any(not isinstance(x, Integral) or x < 0 for x in lengths) or sum(lengths) != n:
        raise ValueError(f"random_split: lengths {lengths} must be non-negative counts that sum "
                         f"to the data set's {n} samples, or fractions that sum to 1")
    order = _rng(generator).permutation(n)
    ends = np.cumsum(lengths)
    return [Subset(dataset, order[end - size:end]) for size, end in zip(lengths, ends)]


def _rng(generator):
    if generator is None:
        return engine_random.generator()
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, Integral):
        return np.random.default_rng(int(generator))
    raise TypeError(f"generator must be None, an int seed or a numpy Generator, got "
                    f"{type(generator).__module__}.{type(generator).__name__}; a torch.Generator "
                    "cannot drive minicnn's randomness (pass torch.initial_seed() instead)")


class Sampler:
    """Base class: indices(rng) -> one epoch's sample indices; iterating draws from minicnn's."""

    def indices(self, rng):
        raise NotImplementedError

    def __iter__(self):
        return iter(int(i) for i in self.indices(engine_random.generator()))


class SequentialSampler(Sampler):
    def __init__(self, data_source):
        self.n = len(data_source)

    def __len__(self):
        return self.n

    def indices(self, rng):
        return np.arange(self.n)


class RandomSampler(Sampler):
    """A permutation each epoch, or num_samples draws with replacement."""

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        self.n, self.replacement = len(data_source), bool(replacement)
        self.num_samples = self.n if num_samples is None else int(num_samples)
        self.generator = generator

    def __len__(self):
        return self.num_samples

    def indices(self, rng):
        rng = rng if self.generator is None else _rng(self.generator)
        if self.replacement:
            return rng.integers(0, self.n, self.num_samples)
        return np.concatenate([rng.permutation(self.n)
                               for _ in range(math.ceil(self.num_samples / max(self.n, 1)))]
                              )[:self.num_samples] if self.n else np.arange(0)


class SubsetRandomSampler(Sampler):
    """The given indices, in a new random order each epoch."""

    def __init__(self, indices, generator=None):
        self.subset, self.generator = np.asarray(list(indices), dtype=np.int64), generator

    def __len__(self):
        return int(self.subset.size)

    def indices(self, rng):
        rng = rng if self.generator is None else _rng(self.generator)
        return self.subset[rng.permutation(self.subset.size)]


class WeightedRandomSampler(sampling.WeightedRandomSampler, Sampler):
    """num_samples indices, each drawn with probability proportional to its weight."""

    def __init__(self, weights, num_samples, replacement=True, generator=None):
        if isinstance(weights, Tensor):
            weights = weights.numpy()
        super().__init__(weights, num_samples, replacement)
        self.generator = generator

    def indices(self, rng):
        return super().indices(rng if self.generator is None else _rng(self.generator))


def default_collate(batch):
    """A list of samples -> one batch, by PyTorch's rules: arrays and Tensors stacked,
    ints -> an int64 Tensor, floats -> float64, strings -> a list, dicts key by key, and
    tuples/lists field by field into a list (a namedtuple stays one)."""
    first = batch[0]
    if isinstance(first, Tensor):
        return Tensor._wrap(first.xp.stack([s.array for s in batch]), device=first.device)
    if isinstance(first, np.ndarray):
        stacked = np.stack(batch)
        return Tensor(stacked, dtype=stacked.dtype)        # the arrays' own dtype, as torch
    if isinstance(first, (bool, np.bool_)):
        return Tensor(np.array(batch, dtype=bool), dtype=bool)
    if isinstance(first, Integral):
        return Tensor(np.array(batch, dtype=np.int64), dtype=np.int64)
    if isinstance(first, Real):
        return Tensor(np.array(batch, dtype=np.float64), dtype=np.float64)
    if isinstance(first, (str, bytes)):
        return list(batch)
    if isinstance(first, dict):
        return {key: default_collate([s[key] for s in batch]) for key in first}
    if isinstance(first, (tuple, list)):
        if any(len(s) != len(first) for s in batch):
            raise ValueError("default_collate: samples of a batch have different lengths "
                             f"({sorted({len(s) for s in batch})})")
        fields = [default_collate(list(field)) for field in zip(*batch)]
        return type(first)(*fields) if hasattr(first, "_fields") else fields  # namedtuple kept
    raise TypeError(f"default_collate: cannot batch samples of type {type(first).__name__}; "
                    "return arrays, Tensors, numbers, or tuples/dicts of them from __getitem__, "
                    "or pass collate_fn")


class DataLoader(engine_loader.DataLoader):
    """PyTorch's DataLoader signature over minicnn's reproducible batching (see the module)."""

    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False,
                 generator=None, **compatible):
        unknown = set(compatible) - {"timeout", "worker_init_fn", "prefetch_factor",
                                     "persistent_workers", "multiprocessing_context"}
        if unknown:
            raise TypeError(f"DataLoader: unexpected argument(s) {', '.join(sorted(unknown))}")
        if batch_sampler is not None:
            raise ValueError("DataLoader: batch_sampler is not supported; give batch_size and "
                             "a sampler instead")
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"DataLoader: the data set ({type(dataset).__name__}) needs "
                            "__len__ and __getitem__")
        if isinstance(sampler, Integral) or (sampler is not None and not hasattr(sampler, "__iter__")
                                             and not hasattr(sampler, "indices")):
            raise TypeError(f"DataLoader: sampler must be a sampler, got {type(sampler).__name__}")
        seed = int(_rng(generator).integers(0, 2**62))
        super().__init__(dataset, batch_size=batch_size, shuffle=bool(shuffle), seed=seed,
                         drop_last=drop_last, sampler=sampler)
        self.collate_fn = collate_fn or default_collate
        self.num_workers, self.pin_memory = int(num_workers), bool(pin_memory)
        self._iterations = 0

    def order(self, epoch=None):
        if self.sampler is not None and not hasattr(self.sampler, "indices"):
            return np.asarray(list(iter(self.sampler)), dtype=np.int64)  # a user's own sampler
        return super().order(epoch)

    def __iter__(self):
        """One epoch; each new iteration is the next epoch (a new shuffle), as PyTorch's."""
        epoch = self._iterations
        self._iterations += 1
        order = self.order(epoch)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            with engine_random.using(np.random.default_rng([self.seed, epoch, b])):
                if isinstance(self.dataset, TensorDataset) and self.collate_fn is default_collate:
                    yield self.dataset.rows(idx)
                else:
                    yield self.collate_fn([self.dataset[int(i)] for i in idx])

    def set_epoch(self, epoch):
        """The next iteration gives epoch `epoch` (for resuming and distributed runs)."""
        self._iterations = int(epoch)


__all__ = ["Dataset", "TensorDataset", "Subset", "random_split", "Sampler", "SequentialSampler",
           "RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler", "default_collate",
           "DataLoader"]
