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
from .. import validate
from ..npzfile import read_npz
from . import images as imagefiles
from . import medmnist_info
from .synthetic import CLASSES as SYNTHETIC_CLASSES, synthetic_split
from .transforms import CenterSquare, Resize

SPLITS = ("train", "val", "test")

# PneumoniaMNIST's labels as the Kermany folders name them (NORMAL/, PNEUMONIA/), so a
# network trained on either reads the other; every other set: medmnist_info's label names
MEDMNIST_CLASSES = {"pneumoniamnist": ("NORMAL", "PNEUMONIA")}

# the synthetic set `minicnn train` uses when given no data: sizes per split
SYNTHETIC_SIZES = {"train": 1600, "val": 400, "test": 400}


class ArrayDataset:
    """Images held in memory: images float32 (N, C, H, W) in [0, 1], labels int64 (N,).

    get(i, rng) -> (image (C, H, W) float32 after `transform`, label int);
    transform(image, rng) may be None (the image as stored).
    """

    def __init__(self, images, labels, classes, transform=None, name="", files=None):
        images = np.ascontiguousarray(images, dtype=np.float32)
        classes = tuple(classes)
        labels = validate.labels(f"ArrayDataset {name!r}: labels", labels, len(classes),
                                 f"{len(classes)} classes were given ({', '.join(map(str, classes))})")
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
        validate.fits_in_memory(f"{folder}: its {len(files)} images as float32 at "
                                f"{image_size}x{image_size}", len(files) * channels * image_size ** 2 * 4,
                                hint="; train with a smaller --image-size")
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
            except (MemoryError, RecursionError, ArithmeticError, ValueError, TypeError,
                    IndexError, KeyError, AttributeError, RuntimeError) as err:  # a reader's fault
                errors.append(f"{path}: could not be read ({type(err).__name__}: {err})")
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
    validate.splits_classes(root, {s: [1] * len(classes) for s in SPLITS}, classes)
    datasets, problems = {}, []
    for s in SPLITS:  # every split read, so one message names every bad file
        try:
            datasets[s] = ImageFolder(os.path.join(root, s), image_size, channels, classes,
                                      progress=progress)
        except UserError as err:
            problems.append(str(err))
    if problems:
        raise UserError("\n".join(problems))
    skipped = sum(len(d.skipped) for d in datasets.values())
    info = _info(f"folder {root}", False, datasets, {"skipped_non_images": skipped})
    return Splits(datasets["train"], datasets["val"], datasets["test"], info)


# --- MedMNIST .npz -------------------------------------------------------------------------------

NPZ_HINT = "; download it again (minicnn download pneumoniamnist)"


def load_npz(path, check=None):
    """The arrays of an .npz file, read without pickle; a UserError naming the file otherwise.

    check(headers) runs on the members' declared shapes before anything is inflated."""
    return read_npz(path, UserError, "dataset .npz", hint=NPZ_HINT, check=check)


def medmnist_name(path):
    """'pneumoniamnist' for .../pneumoniamnist.npz or pneumoniamnist_64.npz; else the stem."""
    known = medmnist_info.identify(path)
    return known[0] if known else os.path.basename(os.fspath(path)).lower().split(".")[0]


def _check_npz_members(path, headers, image_size, channels):
    """Shapes and dtypes of the split arrays, from their headers (nothing inflated yet)."""
    total = 0
    for split in SPLITS:
        key_x, key_y = f"{split}_images", f"{split}_labels"
        if key_x not in headers or key_y not in headers:
            raise UserError(f"{path}: has no '{key_x}' / '{key_y}' arrays (it holds "
                            f"{', '.join(sorted(headers)) or 'nothing'}); a MedMNIST 2D file "
                            "has train_, val_ and test_ images and labels")
        (sx, dx), (sy, dy) = headers[key_x], headers[key_y]
        if len(sy) == 2 and sy[1] > 1:
            raise UserError(f"{path}: {key_y} has {sy[1]} labels per image (a multi-label "
                            "set such as ChestMNIST); minicnn trains one-label classifiers")
        if len(sx) not in (3, 4) or len(sy) not in (1, 2) or sx[0] != sy[0] or \
                (len(sx) == 4 and sx[3] not in (1, 3)):
            raise UserError(f"{path}: {key_x} has shape {sx} and {key_y} {sy}; expected "
                            "(N, H, W) or (N, H, W, 3) images and (N, 1) labels, the same N")
        if sx[0] == 0:
            raise UserError(f"{path}: the {split} split is empty ({key_x} has shape {sx}); "
                            "every split (train, val, test) needs images")
        if dy.kind not in "iuf":
            raise UserError(f"{path}: {key_y} holds {dy} values; labels must be whole numbers "
                            "(class 0, 1, ...)")
        if dx not in (np.uint8, np.uint16) and dx.kind != "f":
            raise UserError(f"{path}: {key_x} holds {dx} pixels; minicnn reads uint8 (0-255), "
                            "uint16 (0-65535) or float in [0, 1] (convert it to one of those)")
        if min(sx[1:3]) < 1:
            raise UserError(f"{path}: {key_x} has shape {sx}: images of no pixels")
        side = image_size or max(sx[1:3])
        total += sx[0] * channels * side * side * 4
    validate.fits_in_memory(f"{path}: its images as float32 at {image_size or 'native'} pixels",
                            total, hint="; train with a smaller --image-size")


def _npz_classes(path, labels):
    """(class names, where they come from) for a MedMNIST file: its own label set when the
    file name is a MedMNIST one, else the training labels 0..max."""
    name = medmnist_name(path)
    if name in MEDMNIST_CLASSES:
        classes = MEDMNIST_CLASSES[name]
    elif name in medmnist_info.SETS:  # the label names MedMNIST publishes for the set
        classes = tuple(medmnist_info.SETS[name]["labels"])
    else:
        train = labels["train"]
        k = int(train.max()) + 1
        present = np.unique(train)
        if present.size != k:  # a class number no training image has: a gap, or a typo
            first = int(np.argmax(present != np.arange(present.size)))
            raise UserError(f"{path}: train_labels run from 0 to {k - 1} but no training image "
                            f"has label {first}; classes are numbered 0, 1, ... without gaps, "
                            "each with training images")
        return tuple(str(i) for i in range(k)), (f"its training labels run from 0 to {k - 1}, "
                                                  f"so it has {k} classes")
    return classes, f"{name} has {len(classes)} classes"


def read_medmnist(path, image_size=None, channels=1):
    """Every split of a MedMNIST .npz, checked: ({split: (images uint8/uint16/float array,
    labels int64 (N,))}, classes, native_size). See MedMNIST for what is checked."""
    path = os.fspath(path)
    arrays = load_npz(path, check=lambda h: _check_npz_members(path, h, image_size, channels))
    return _check_npz_labels(path, arrays)


def _check_npz_labels(path, arrays):
    """The labels of every split: whole numbers >= 0, then below the declared class count;
    two classes or more in training, none elsewhere that training lacks."""
    labels = {s: validate.labels(f"{path}: {s}_labels", arrays[f"{s}_labels"]) for s in SPLITS}
    classes, source = _npz_classes(path, labels)
    counts = {}
    for s in SPLITS:  # training first: its classes are what the others are checked against
        validate.labels(f"{path}: {s}_labels", labels[s], len(classes), source)
        counts[s] = np.bincount(labels[s], minlength=len(classes))
        validate.splits_classes(path, counts, classes)
    return ({s: (arrays[f"{s}_images"], labels[s]) for s in SPLITS}, classes,
            int(arrays["train_images"].shape[1]))


class MedMNIST(ArrayDataset):
    """One split of a MedMNIST 2D .npz (keys {split}_images, {split}_labels).

    images uint8 / uint16 (N, H, W) or (N, H, W, 3), or float in [0, 1]; labels (N, 1)
    whole numbers below the class count the file's name declares (pneumoniamnist: 2),
    or, for another name, below the training labels' max + 1. The training split must
    hold at least two classes and every split only classes the training split holds.
    The images are resized to image_size (all at once, here) and converted to `channels`.
    """

    def __init__(self, path, split="train", image_size=None, channels=1, transform=None,
                 arrays=None, checked=None):
        path = os.fspath(path)
        if checked is None:
            if arrays is not None:  # already read by the caller: check them the same way
                checked = _checked_from_arrays(path, arrays, image_size, channels)
            else:
                checked = read_medmnist(path, image_size, channels)
        splits, classes, native = checked
        if split not in splits:
            raise UserError(f"{path}: no split {split!r}; a MedMNIST file has "
                            f"{', '.join(SPLITS)}")
        x, y = splits[split]
        x = validate.image_values(f"{path}: {split}_images", x)  # float32 in [0, 1]
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
        if x.shape[1] != channels:
            x = np.stack([imagefiles.to_channels(im.transpose(1, 2, 0) if im.shape[0] == 3
                                                 else im[0], channels) for im in x])
        if image_size is not None and tuple(x.shape[2:]) != (image_size, image_size):
            x = np.stack([frame(im, image_size) for im in x])
        super().__init__(x, y, classes, transform, name=f"{medmnist_name(path)}:{split}")
        self.native_size = native


def _checked_from_arrays(path, arrays, image_size, channels):
    headers = {k: (tuple(np.shape(v)), np.asarray(v).dtype) for k, v in arrays.items()}
    _check_npz_members(path, headers, image_size, channels)
    return _check_npz_labels(path, arrays)


def npz_splits(path, image_size=None, channels=1):
    checked = read_medmnist(path, image_size, channels)
    datasets = {s: MedMNIST(path, s, image_size, channels, checked=checked) for s in SPLITS}
    native = datasets["train"].native_size
    info = _info(f"npz {os.fspath(path)}", False, datasets, {"native_size": native})
    return Splits(datasets["train"], datasets["val"], datasets["test"], info)


# --- synthetic -------------------------------------------------------------------------------------

def synthetic_splits(image_size=28, channels=1, seed=0, sizes=None):
    """The SYNTHETIC set (see minicnn.data.synthetic): deterministic from seed."""
    sizes = dict(SYNTHETIC_SIZES, **(sizes or {}))
    validate.fits_in_memory(f"the synthetic set ({sum(sizes.values())} images at {image_size}x"
                            f"{image_size})", sum(sizes.values()) * channels * image_size ** 2 * 4,
                            hint="; use a smaller --synthetic-size or --image-size")
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
    if image_size is not None:
        validate.integer("--image-size", image_size, 1, validate.MAX_IMAGE_SIZE)
    validate.choice("channels", channels, (1, 3))
    if source == "synthetic":
        return synthetic_splits(28 if image_size is None else image_size, channels, seed,
                                synthetic_sizes)
    if source.lower().endswith(".npz"):
        return npz_splits(source, image_size, channels)
    if os.path.isdir(source):
        return folder_splits(source, 64 if image_size is None else image_size, channels,
                             progress=progress)
    if os.path.exists(source):
        raise UserError(f"{source}: not a data set minicnn reads; --data takes a folder "
                        "(train/, val/, test/ with one folder per class), a MedMNIST .npz "
                        "file, or 'synthetic'")
    raise UserError(f"{source}: no such file or folder (--data takes a folder, a .npz file, "
                    "or 'synthetic')")
