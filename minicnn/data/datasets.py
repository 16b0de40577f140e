"""Data sets: chest X-ray folders (Kermany layout), MedMNIST .npz files, and the synthetic set.

All three end up as an ArrayDataset per split: every image decoded once, framed
(centre square) and resized to the model's input size, and held in memory as float32
(N, C, H, W) in [0, 1], with int64 labels (N,). Decoding once keeps an epoch fast and
finds a bad file before training starts, not an hour into it. Augmentation and
normalisation are applied per sample, per epoch, by `transform`.

    splits = open_splits("data/chest_xray", image_size=64, channels=1)
    splits.train, splits.val, splits.test, splits.info

Folder layout (the Kermany / Kaggle "chest_xray" set):

    root/train/NORMAL/*.jpeg   root/train/PNEUMONIA/*.jpeg
    root/val/...               root/test/...

Class names are the folder names, sorted (NORMAL = 0, PNEUMONIA = 1), and every
split must have the same class folders.
"""
import os

import numpy as np

from ..errors import UserError
from ..npzfile import read_npz
from . import images as imagefiles
from .synthetic import CLASSES as SYNTHETIC_CLASSES, synthetic_split
from .transforms import CenterSquare, Resize

SPLITS = ("train", "val", "test")

# label names of the MedMNIST 2D sets that are binary or small, by file name
MEDMNIST_CLASSES = {"pneumoniamnist": ("NORMAL", "PNEUMONIA"),
                    "breastmnist": ("malignant", "normal, benign")}

# the synthetic set `minicnn train` uses when given no data: sizes per split
SYNTHETIC_SIZES = {"train": 1600, "val": 400, "test": 400}


class ArrayDataset:
    """Images held in memory: images float32 (N, C, H, W) in [0, 1], labels int64 (N,).

    get(i, rng) -> (image (C, H, W) float32 after `transform`, label int);
    transform(image, rng) may be None (the image as stored).
    """

    def __init__(self, images, labels, classes, transform=None, name="", files=None):
        images = np.ascontiguousarray(images, dtype=np.float32)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if images.ndim != 4 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"ArrayDataset: expected images (N, C, H, W) and labels (N,), got "
                             f"{images.shape} and {labels.shape}")
        self.images, self.labels = images, labels
        self.classes = tuple(classes)
        self.transform = transform
        self.name = name
        self.files = files

    def __len__(self):
        return int(self.labels.shape[0])

    def get(self, i, rng=None):
        image = self.images[i]
        if self.transform is not None:
            image = self.transform(image, rng if rng is not None else np.random.default_rng(0))
        return image, int(self.labels[i])

    def __getitem__(self, i):
        return self.get(i)

    def get_batch(self, indices, rng=None):
        """(images (B, C, H, W) float32, labels (B,) int64) for `indices`, in order."""
        indices = np.asarray(indices, dtype=np.int64)
        if self.transform is None:
            return self.images[indices], self.labels[indices]
        rng = rng if rng is not None else np.random.default_rng(0)
        batch = np.stack([self.transform(self.images[i], rng) for i in indices])
        return batch.astype(np.float32, copy=False), self.labels[indices]

    def with_transform(self, transform):
        """The same images (shared, not copied) with another transform."""
        return ArrayDataset(self.images, self.labels, self.classes, transform, self.name, self.files)

    @property
    def image_shape(self):
        return tuple(self.images.shape[1:])

    def class_counts(self):
        """(K,) int64: how many images of each class."""
        return np.bincount(self.labels, minlength=len(self.classes)).astype(np.int64)

    def __repr__(self):
        counts = ", ".join(f"{c}={n}" for c, n in zip(self.classes, self.class_counts()))
        return f"ArrayDataset({self.name!r}, {len(self)} images {self.image_shape}, {counts})"


class Splits:
    """train / val / test ArrayDatasets and `info`, a JSON-able description of the data."""

    def __init__(self, train, val, test, info):
        self.train, self.val, self.test, self.info = train, val, test, info

    def __getitem__(self, name):
        return getattr(self, name)


def frame(image, image_size, min_size=None, source="image"):
    """(C, H, W) float32 -> (C, image_size, image_size): centre square, then resize.

    min_size: a UserError naming `source` if the image's short side is smaller.
    """
    if min_size is not None:  # checked on the whole image, so the message gives its real size
        Resize(image_size, min_size=min_size)._check(image, source)
    return Resize(image_size)(CenterSquare()(image))


# --- folders of image files ------------------------------------------------------------------

def _list_dir(path):
    try:
        return sorted(os.listdir(path))
    except OSError as err:
        raise UserError(f"{path}: cannot list this folder ({err.strerror})") from None


def class_folders(split_dir):
    """Sorted names of the sub-folders of split_dir (hidden ones ignored)."""
    return [d for d in _list_dir(split_dir)
            if not d.startswith(".") and os.path.isdir(os.path.join(split_dir, d))]


def image_files(folder):
    """(files to read, files skipped) in folder: hidden files and known non-image types skipped."""
    keep, skipped = [], []
    for name in _list_dir(folder):
        path = os.path.join(folder, name)
        if name.startswith(".") or os.path.isdir(path) or name in ("Thumbs.db", "desktop.ini"):
            continue
        (skipped if name.lower().endswith(imagefiles.NOT_IMAGE_SUFFIXES) else keep).append(path)
    return keep, skipped


class ImageFolder(ArrayDataset):
    """One split folder, folder/CLASS/image: every image read, framed and resized.

    classes: the class names expected (e.g. those of the train split); by default the
    sorted sub-folder names. A bad file stops with a UserError naming every bad file.
    """

    def __init__(self, folder, image_size=28, channels=1, classes=None, transform=None,
                 progress=False):
        folder = os.fspath(folder)
        if not os.path.isdir(folder):
            raise UserError(f"{folder}: no such folder")
        found = class_folders(folder)
        if not found:
            raise UserError(f"{folder}: no class folders inside; expected one folder per class, "
                            "e.g. NORMAL/ and PNEUMONIA/, each holding images")
        classes = tuple(found if classes is None else classes)
        files, labels, skipped = [], [], []
        for label, name in enumerate(classes):
            keep, skip = image_files(os.path.join(folder, name))
            if not keep:
                raise UserError(f"{os.path.join(folder, name)}: this class folder holds no images; "
                                "every class needs at least one in every split")
            files += keep
            labels += [label] * len(keep)
            skipped += skip
        self.skipped = skipped
        decoded, errors = [], []
        iterator = files
        if progress:
            from tqdm import tqdm
            iterator = tqdm(files, desc=f"reading {folder}", unit="img", leave=False)
        for path in iterator:
            try:
                image = imagefiles.read_image(path, channels)
                decoded.append(frame(image, image_size, min_size=image_size, source=path))
            except UserError as err:
                errors.append(str(err))
        if errors:
            more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
            raise UserError(f"{len(errors)} file(s) in {folder} could not be used:\n  "
                            + "\n  ".join(errors[:10]) + more)
        super().__init__(np.stack(decoded), labels, classes, transform,
                         name=os.path.basename(os.path.normpath(folder)), files=files)


def folder_splits(root, image_size, channels, progress=False):
    """Splits of root/{train,val,test}/CLASS/*; all three must exist with the same classes."""
    root = os.fspath(root)
    missing = [s for s in SPLITS if not os.path.isdir(os.path.join(root, s))]
    if missing:
        present = class_folders(root)
        hint = ""
        if present and not set(present) & set(SPLITS):
            hint = (f" (it holds {', '.join(present[:5])}: point --data at the folder that "
                    "contains train/, val/ and test/)")
        raise UserError(f"{root}: missing the {', '.join(missing)} split folder(s); expected "
                        f"{root}/train, {root}/val and {root}/test, each with one folder per "
                        f"class{hint}")
    per_split = {s: class_folders(os.path.join(root, s)) for s in SPLITS}
    classes = per_split["train"]
    for s in ("val", "test"):
        if per_split[s] != classes:
            only_train = sorted(set(classes) - set(per_split[s]))
            only_here = sorted(set(per_split[s]) - set(classes))
            detail = []
            if only_train:
                detail.append(f"missing from {s}: {', '.join(only_train)}")
            if only_here:
                detail.append(f"not in train: {', '.join(only_here)}")
            raise UserError(f"{root}: the class folders differ between splits "
                            f"(train has {', '.join(classes) or 'none'}; {'; '.join(detail)}); "
                            "every split needs the same class folders")
    datasets = {s: ImageFolder(os.path.join(root, s), image_size, channels, classes,
                               progress=progress) for s in SPLITS}
    skipped = sum(len(d.skipped) for d in datasets.values())
    info = _info(f"folder {root}", False, datasets, {"skipped_non_images": skipped})
    return Splits(datasets["train"], datasets["val"], datasets["test"], info)


# --- MedMNIST .npz -------------------------------------------------------------------------------

def load_npz(path):
    """The arrays of an .npz file, read without pickle; a UserError naming the file otherwise."""
    return read_npz(path, UserError, "dataset .npz",
                    hint="; download it again (minicnn download pneumoniamnist)")


class MedMNIST(ArrayDataset):
    """One split of a MedMNIST 2D .npz (keys {split}_images, {split}_labels).

    images uint8 (N, H, W) or (N, H, W, 3); labels (N, 1) class numbers. The images
    are resized to image_size (all at once, here) and converted to `channels`.
    """

    def __init__(self, path, split="train", image_size=None, channels=1, transform=None,
                 arrays=None):
        path = os.fspath(path)
        arrays = load_npz(path) if arrays is None else arrays
        key_x, key_y = f"{split}_images", f"{split}_labels"
        if key_x not in arrays or key_y not in arrays:
            raise UserError(f"{path}: has no '{key_x}' / '{key_y}' arrays (it holds "
                            f"{', '.join(sorted(arrays)) or 'nothing'}); a MedMNIST 2D file "
                            "has train_, val_ and test_ images and labels")
        x, y = arrays[key_x], arrays[key_y]
        if y.ndim == 2 and y.shape[1] > 1:
            raise UserError(f"{path}: {key_y} has {y.shape[1]} labels per image (a multi-label "
                            "set such as ChestMNIST); minicnn trains one-label classifiers")
        y = y.reshape(-1).astype(np.int64)
        if x.ndim not in (3, 4) or x.shape[0] != y.shape[0] or (x.ndim == 4 and x.shape[3] not in (1, 3)):
            raise UserError(f"{path}: {key_x} has shape {x.shape} and {key_y} {arrays[key_y].shape}; "
                            "expected (N, H, W) or (N, H, W, 3) images and (N, 1) labels")
        if x.shape[0] == 0:
            raise UserError(f"{path}: the {split} split is empty")
        if y.min() < 0:
            raise UserError(f"{path}: {key_y} holds negative labels")
        # float32 (N, C, H, W) in [0, 1]
        scale = float(np.iinfo(x.dtype).max) if np.issubdtype(x.dtype, np.integer) else 1.0
        x = x.astype(np.float32) / scale
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
        if x.shape[1] != channels:
            x = np.stack([imagefiles.to_channels(im.transpose(1, 2, 0) if im.shape[0] == 3
                                                 else im[0], channels) for im in x])
        if image_size is not None and tuple(x.shape[2:]) != (image_size, image_size):
            x = np.stack([frame(im, image_size) for im in x])
        base = os.path.basename(path).lower().split(".")[0]
        n_classes = int(max(arrays[f"{s}_labels"].max() for s in SPLITS
                            if f"{s}_labels" in arrays)) + 1
        classes = MEDMNIST_CLASSES.get(base, tuple(str(k) for k in range(n_classes)))
        if len(classes) != n_classes:
            classes = tuple(str(k) for k in range(n_classes))
        super().__init__(x, y, classes, transform, name=f"{base}:{split}")
        self.native_size = int(arrays[key_x].shape[1])


def npz_splits(path, image_size=None, channels=1):
    arrays = load_npz(path)
    datasets = {s: MedMNIST(path, s, image_size, channels, arrays=arrays) for s in SPLITS}
    native = datasets["train"].native_size
    info = _info(f"npz {os.fspath(path)}", False, datasets, {"native_size": native})
    return Splits(datasets["train"], datasets["val"], datasets["test"], info)


# --- synthetic -------------------------------------------------------------------------------------

def synthetic_splits(image_size=28, channels=1, seed=0, sizes=None):
    """The SYNTHETIC set (see minicnn.data.synthetic): deterministic from seed."""
    sizes = dict(SYNTHETIC_SIZES, **(sizes or {}))
    datasets = {}
    for s in SPLITS:
        x, y = synthetic_split(sizes[s], image_size, seed, s)
        if channels == 3:
            x = np.repeat(x, 3, axis=1)
        datasets[s] = ArrayDataset(x, y, SYNTHETIC_CLASSES, name=f"synthetic:{s}")
    info = _info("synthetic", True, datasets, {"seed": int(seed)})
    return Splits(datasets["train"], datasets["val"], datasets["test"], info)


def _info(source, synthetic, datasets, extra):
    classes = list(datasets["train"].classes)
    info = {"source": source, "synthetic": bool(synthetic), "classes": classes,
            "image_shape": list(datasets["train"].image_shape),
            "split_sizes": {s: len(d) for s, d in datasets.items()},
            "class_counts": {s: {c: int(n) for c, n in zip(classes, d.class_counts())}
                             for s, d in datasets.items()}}
    info.update(extra)
    return info


def open_splits(source="synthetic", image_size=None, channels=1, seed=0, synthetic_sizes=None,
                progress=False):
    """train/val/test from "synthetic", a MedMNIST .npz file, or a folder of split folders.

    image_size None means: the file's own size for .npz, 28 for synthetic, 64 for folders.
    """
    source = "synthetic" if source is None else os.fspath(source)
    if source == "synthetic":
        return synthetic_splits(image_size or 28, channels, seed, synthetic_sizes)
    if source.lower().endswith(".npz"):
        return npz_splits(source, image_size, channels)
    if os.path.isdir(source):
        return folder_splits(source, image_size or 64, channels, progress=progress)
    if os.path.exists(source):
        raise UserError(f"{source}: not a data set minicnn reads; --data takes a folder "
                        "(train/, val/, test/ with one folder per class), a MedMNIST .npz "
                        "file, or 'synthetic'")
    raise UserError(f"{source}: no such file or folder (--data takes a folder, a .npz file, "
                    "or 'synthetic')")
