"""Multi-label data sets: images with (N, K) float32 0/1 labels, one column per finding.

MultiLabelSet holds what they share (batches, items, positives per finding) over any
`images` that can be indexed by an index array and has a `.shape`: MultiLabelArrays
keeps them in memory (a ChestMNIST .npz), chestxray14.MultiLabelImages reads them from
the decoded-image cache.

    get_batch(indices, rng) -> (images (B, C, S, S) float32 in [0, 1] after `transform`,
                                labels (B, K) float32)
"""
import numpy as np


class MultiLabelSet:
    multilabel = True

    def __init__(self, images, labels, classes, transform=None, name="", files=None):
        self.images, self.labels = images, np.asarray(labels, dtype=np.float32)
        self.classes, self.transform, self.name, self.files = tuple(classes), transform, name, files
        if self.labels.ndim != 2 or self.labels.shape != (images.shape[0], len(self.classes)):
            raise ValueError(f"{type(self).__name__}: images {tuple(images.shape)} need labels "
                             f"({images.shape[0]}, {len(self.classes)}), got {self.labels.shape}")

    def __len__(self):
        return int(self.labels.shape[0])

    def get_batch(self, indices, rng=None):
        indices = np.asarray(indices, dtype=np.int64)
        images = self.images[indices]
        if self.transform is not None:
            rng = rng if rng is not None else np.random.default_rng(0)
            images = np.stack([self.transform(im, rng) for im in images]).astype(np.float32)
        return images, self.labels[indices]

    def get(self, i, rng=None):
        images, labels = self.get_batch([i], rng)
        return images[0], labels[0]

    def __getitem__(self, i):
        return self.get(i)

    @property
    def image_shape(self):
        return tuple(self.images.shape[1:])

    def positives(self):
        """(K,) int64: images with each finding."""
        return self.labels.sum(axis=0).astype(np.int64)


class MultiLabelArrays(MultiLabelSet):
    """Images held in memory: the multi-label sibling of datasets.ArrayDataset."""

    def __init__(self, images, labels, classes, transform=None, name="", files=None):
        super().__init__(np.ascontiguousarray(images, dtype=np.float32), labels, classes,
                         transform, name, files)

    def with_transform(self, transform):
        """The same images (shared, not copied) with another transform."""
        return MultiLabelArrays(self.images, self.labels, self.classes, transform, self.name,
                                self.files)
