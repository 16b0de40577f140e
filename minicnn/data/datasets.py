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
split must have the same class folders. Without val/, a stratified, seeded share of
train (--val-fraction) becomes the validation split.

Multi-label data (several findings per image) comes as multilabel.MultiLabelArrays (a
ChestMNIST .npz, in memory) or chestxray14.MultiLabelImages (a ChestX-ray14 folder, from the
decoded-image cache), with labels (N, K) float32 0/1; one finding asked for becomes a
two-class BinaryView of it.
"""
import difflib
import os

import numpy as np
from tqdm import tqdm

from ..errors import UserError
from .. import validate
from ..npzfile import read_npz
from . import images as imagefiles
from . import medmnist_info
from .multilabel import MultiLabelArrays
from .chestxray14 import FINDINGS, is_chestxray14, open_chestxray14, pick_findings
from .synthetic import CLASSES as SYNTHETIC_CLASSES, synthetic_split
from .transforms import CenterSquare, Resize
from .vision import IMG_EXTENSIONS, ImageFolder  # noqa: F401  (torchvision's, for ports)

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


def _as_nchw(x, channels, image_size):
    """MedMNIST's images, (N, H, W) or (N, H, W, 3) in [0, 1], as (N, channels, S, S) with
    S = image_size (each framed by `frame`), or the file's own size when it is None."""
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    if x.shape[1] != channels:
        x = np.stack([imagefiles.to_channels(im.transpose(1, 2, 0) if im.shape[0] == 3
                                             else im[0], channels) for im in x])
    if image_size is not None and tuple(x.shape[2:]) != (image_size, image_size):
        x = np.stack([frame(im, image_size) for im in x])
    return x


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


class ImageFolderSplit(ArrayDataset):
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


def folder_splits(root, image_size, channels, progress=False, val_fraction=0.1, seed=0,
                  log=print):
    """Splits of root/{train,val,test}/CLASS/*, all with the same classes. Without val/,
    a stratified, seeded `val_fraction` of train becomes the validation split (said in
    the output and in info["val_from_train"])."""
    root = os.fspath(root)
    carve = not os.path.isdir(os.path.join(root, "val")) and \
        all(os.path.isdir(os.path.join(root, s)) for s in ("train", "test"))
    needed = ("train", "test") if carve else SPLITS
    missing = [s for s in needed if not os.path.isdir(os.path.join(root, s))]
    if missing:
        present = class_folders(root)
        hint = ""
        if present and not set(present) & set(SPLITS):
            hint = (f" (it holds {', '.join(present[:5])}: point --data at the folder that "
                    "contains train/, val/ and test/)")
        raise UserError(f"{root}: missing the {', '.join(missing)} split folder(s); expected "
                        f"{root}/train, {root}/val and {root}/test, each with one folder per "
                        f"class{hint}")
    per_split = {s: class_folders(os.path.join(root, s)) for s in needed}
    classes = per_split["train"]
    for s in needed[1:]:
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
    validate.splits_classes(root, {s: [1] * len(classes) for s in needed}, classes)
    datasets, problems = {}, []
    for s in needed:  # every split read, so one message names every bad file
        try:
            datasets[s] = ImageFolderSplit(os.path.join(root, s), image_size, channels, classes,
                                      progress=progress)
        except UserError as err:
            problems.append(str(err))
    if problems:
        raise UserError("\n".join(problems))
    skipped = sum(len(d.skipped) for d in datasets.values())
    extra = {"skipped_non_images": skipped}
    if carve:
        if not 0.0 < val_fraction < 1.0:
            raise UserError(f"--val-fraction: {val_fraction} must be between 0 and 1 "
                            "(exclusive)")
        whole = datasets["train"]
        train_idx, val_idx = stratified_split(whole.labels, val_fraction, seed)
        if val_idx.size == 0:
            raise UserError(f"{root}: has no val/ folder and train/ is too small to carve a "
                            f"validation split from ({len(whole)} images); add a val/ folder")
        datasets = {"train": _subset(whole, train_idx, "train"),
                    "val": _subset(whole, val_idx, "val"), "test": datasets["test"]}
        counts = dict(zip(classes, np.bincount(whole.labels[val_idx],
                                               minlength=len(classes)).tolist()))
        extra["val_from_train"] = {"fraction": float(val_fraction), "seed": int(seed),
                                   "images": int(val_idx.size), "per_class": counts}
        log(f"{root}: no val/ folder, so validation is {val_idx.size} of the {len(whole)} "
            f"training images ({val_fraction:g} of each class, seed {seed}): "
            + ", ".join(f"{c} {n}" for c, n in counts.items()))
    info = _info(f"folder {root}", False, datasets, extra)
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
        width = headers.get("train_labels", ((), None))[0]
        multi = len(width) == 2 and width[1] > 1
        if multi or (len(sy) == 2 and sy[1] > 1):  # multi-label (ChestMNIST): K in every split
            if len(sy) != 2 or len(width) != 2 or width[1] != sy[1]:
                raise UserError(f"{path}: {key_y} has shape {sy} but train_labels {width}; a "
                                "multi-label file has the same number of labels per image "
                                "in every split")
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


def is_multilabel_npz(arrays):
    """True when train_labels is (N, K) with K > 1: one 0/1 column per finding."""
    y = arrays["train_labels"]
    return np.ndim(y) == 2 and np.shape(y)[1] > 1


def multilabel_names(path, k):
    """Names of the K label columns of a multi-label .npz: ChestX-ray14's findings for
    ChestMNIST (or any unnamed file with 14 columns), else MedMNIST's names, else label_i."""
    name = medmnist_name(path)
    if (name == "chestmnist" or name not in medmnist_info.SETS) and k == len(FINDINGS):
        return FINDINGS
    known = medmnist_info.SETS.get(name, {}).get("labels")
    if known is not None and len(known) == k:
        return tuple(known)
    if name in medmnist_info.SETS:
        raise UserError(f"{path}: its labels have {k} columns but {name} has "
                        f"{len(known or ())} labels")
    return tuple(f"label_{i}" for i in range(k))


def _multilabel_targets(path, split, y, k):
    """(N, K) labels that must be 0 or 1 -> float32."""
    y = np.asarray(y)
    if y.dtype.kind not in "iufb":
        raise UserError(f"{path}: {split}_labels holds {y.dtype} values; multi-label targets "
                        "are 0 (absent) or 1 (present)")
    bad = np.flatnonzero(~np.isin(y.reshape(-1), (0, 1)))
    if bad.size:
        n, j = divmod(int(bad[0]), k)
        raise UserError(f"{path}: {split}_labels holds {y.reshape(-1)[bad[0]].item()!r} at image {n}, "
                        f"column {j} ({bad.size} such); multi-label targets are 0 (absent) or 1 "
                        "(present)")
    return y.astype(np.float32)


class BinaryView:
    """One finding of a multi-label split as a two-class set: labels (N,) int64, 1 where
    the finding is present; classes ("no <finding>", "<finding>"). The images are the
    multi-label set's own (shared, in memory or in the cache)."""

    multilabel = False

    def __init__(self, dataset, column=0, transform=None):
        self.base, self.column, self.transform = dataset, int(column), transform
        finding = dataset.classes[self.column]
        self.classes = (f"no {finding}", finding)
        self.labels = (np.asarray(dataset.labels)[:, self.column] > 0.5).astype(np.int64)
        self.images, self.name, self.files = dataset.images, dataset.name, dataset.files

    def __len__(self):
        return int(self.labels.shape[0])

    def get_batch(self, indices, rng=None):
        indices = np.asarray(indices, dtype=np.int64)
        images, _ = self.base.get_batch(indices, rng) if self.transform is None else \
            self.base.with_transform(self.transform).get_batch(indices, rng)
        return images, self.labels[indices]

    def get(self, i, rng=None):
        images, labels = self.get_batch([i], rng)
        return images[0], int(labels[0])

    def __getitem__(self, i):
        return self.get(i)

    def with_transform(self, transform):
        return BinaryView(self.base, self.column, transform)

    @property
    def image_shape(self):
        return tuple(self.base.image_shape)

    def class_counts(self):
        return np.bincount(self.labels, minlength=2).astype(np.int64)


def multilabel_npz_splits(path, arrays, image_size, channels, labels=None):
    """Splits of a multi-label .npz (ChestMNIST): MultiLabelArrays with the findings asked
    for (all by default), or BinaryViews when one finding is asked for."""
    k = int(np.shape(arrays["train_labels"])[1])
    names = multilabel_names(path, k)
    if labels is None:
        picked = names
    elif tuple(names) == FINDINGS:
        picked = pick_findings(labels)
    else:
        picked = _pick_named(labels, names)
    columns = [names.index(f) for f in picked]
    datasets = {}
    for s in SPLITS:
        y = _multilabel_targets(path, s, arrays[f"{s}_labels"], k)[:, columns]
        x = validate.image_values(f"{path}: {s}_images", arrays[f"{s}_images"])
        x = _as_nchw(x, channels, image_size)
        datasets[s] = MultiLabelArrays(x, y, picked, name=f"{medmnist_name(path)}:{s}")
    absent = [f for f, n in zip(picked, datasets["train"].positives()) if n == 0]
    if absent:
        raise UserError(f"{path}: no training image has {', '.join(absent)}; a finding needs "
                        "positive examples to be learned (choose others with --labels)")
    native = int(np.shape(arrays["train_images"])[1])
    return datasets, {"source": f"npz {path}", "native_size": native}


def _pick_named(labels, names):
    asked = [n.strip() for n in (labels.split(",") if isinstance(labels, str) else labels)
             if n.strip()]
    by_lower = {n.lower(): n for n in names}
    picked = []
    for name in asked:
        if name.lower() not in by_lower:
            close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"--labels: {name!r} is not a label of this file{hint} (it has "
                            f"{', '.join(names)})")
        if by_lower[name.lower()] not in picked:
            picked.append(by_lower[name.lower()])
    if not picked:
        raise UserError("--labels: name at least one label")
    return tuple(picked)


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
        x = _as_nchw(x, channels, image_size)
        super().__init__(x, y, classes, transform, name=f"{medmnist_name(path)}:{split}")
        self.native_size = native


def _checked_from_arrays(path, arrays, image_size, channels):
    headers = {k: (tuple(np.shape(v)), np.asarray(v).dtype) for k, v in arrays.items()}
    _check_npz_members(path, headers, image_size, channels)
    return _check_npz_labels(path, arrays)


def npz_splits(path, image_size=None, channels=1, labels=None):
    """Splits of a MedMNIST .npz: one label per image (MedMNIST datasets), or multi-label
    (ChestMNIST: multilabel_npz_splits), with `labels` picking findings of the latter."""
    path = os.fspath(path)
    arrays = load_npz(path, check=lambda h: _check_npz_members(path, h, image_size, channels))
    if is_multilabel_npz(arrays):
        datasets, extra = multilabel_npz_splits(path, arrays, image_size, channels, labels)
        return multilabel_splits(datasets, extra)
    checked = _check_npz_labels(path, arrays)
    if labels is not None:
        raise UserError(f"--labels: {path} has one label per image (classes "
                        f"{', '.join(checked[1])}); --labels picks findings of multi-label "
                        "data (a ChestX-ray14 folder, ChestMNIST)")
    datasets = {s: MedMNIST(path, s, image_size, channels, checked=checked) for s in SPLITS}
    native = datasets["train"].native_size
    info = _info(f"npz {os.fspath(path)}", False, datasets, {"native_size": native})
    return Splits(datasets["train"], datasets["val"], datasets["test"], info)


def multilabel_splits(datasets, extra):
    """Splits of multi-label data ({split: MultiLabelArrays or MultiLabelImages}): kept as
    they are for two findings or more; one finding becomes a two-class set (BinaryView),
    trained and scored exactly as the pneumonia classifier is."""
    findings = list(datasets["train"].classes)
    if len(findings) == 1:
        views = {s: BinaryView(d) for s, d in datasets.items()}
        info = _info(extra.pop("source"), False, views, dict(extra, finding=findings[0]))
        return Splits(views["train"], views["val"], views["test"], info)
    info = {"source": extra.pop("source"), "synthetic": False, "multilabel": True,
            "classes": findings, "image_shape": list(datasets["train"].image_shape),
            "split_sizes": {s: len(d) for s, d in datasets.items()},
            "class_counts": {s: dict(zip(findings, d.positives().tolist()))
                             for s, d in datasets.items()}}
    info.update(extra)
    return Splits(datasets["train"], datasets["val"], datasets["test"], info)


def chestxray14_splits(root, image_size, channels, labels=None, val_fraction=0.1, seed=0,
                       progress=False, log=print, splits_csv=None):
    """Splits of a ChestX-ray14 folder (see minicnn.data.chestxray14)."""
    datasets, info = open_chestxray14(root, image_size, channels, labels, val_fraction, seed,
                                      progress=progress, log=log, splits_csv=splits_csv)
    info = dict(info, val_fraction=float(val_fraction), seed=int(seed))
    return multilabel_splits(datasets, info)


# --- a validation split carved from train ------------------------------------------------------------

def stratified_split(labels, fraction, seed):
    """(train indices, val indices): `fraction` of each class (at least one image of a class
    with two or more) drawn at random, seeded; both sorted. labels (N,) int64."""
    rng = np.random.default_rng([int(seed), 1])
    val = []
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        take = int(round(fraction * members.size))
        take = min(max(take, 1 if members.size > 1 else 0), members.size - 1)
        val += rng.permutation(members)[:take].tolist()
    val = np.sort(np.array(val, dtype=np.int64))
    train = np.setdiff1d(np.arange(labels.size), val)
    return train, val


def _subset(d, idx, split):
    files = [d.files[i] for i in idx] if d.files is not None else None
    return ArrayDataset(d.images[idx], d.labels[idx], d.classes, name=split, files=files)


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
                progress=False, labels=None, val_fraction=0.1, splits_csv=None, log=print):
    """train/val/test from "synthetic", a MedMNIST .npz file (one label or multi-label), a
    ChestX-ray14 folder, or a folder of split folders.

    image_size None means: the file's own size for .npz, 28 for synthetic, 64 for folders.
    labels: the findings to learn from multi-label data (default all); val_fraction: the
    share of train that becomes validation where the data has no validation split (a
    ChestX-ray14 folder, by patient; a class folder set without val/, by class);
    splits_csv: where a ChestX-ray14 run writes its split (image, patient, split).
    """
    source = "synthetic" if source is None else os.fspath(source)
    if image_size is not None:
        validate.integer("--image-size", image_size, 1, validate.MAX_IMAGE_SIZE)
    validate.choice("channels", channels, (1, 3))
    validate.number("--val-fraction", val_fraction, lo=0, hi=1, lo_open=True, hi_open=True,
                    what="a share of the images between 0 and 1 (e.g. 0.1)")
    if source != "synthetic" and os.path.isdir(source) and is_chestxray14(source):
        return chestxray14_splits(source, 64 if image_size is None else image_size, channels,
                                  labels, val_fraction, seed, progress, log, splits_csv)
    if labels is not None and not source.lower().endswith(".npz"):
        raise UserError(f"--labels: {source} has one label per image; --labels picks "
                        "findings of multi-label data (a ChestX-ray14 folder, ChestMNIST)")
    if source == "synthetic":
        return synthetic_splits(28 if image_size is None else image_size, channels, seed,
                                synthetic_sizes)
    if source.lower().endswith(".npz"):
        return npz_splits(source, image_size, channels, labels=labels)
    if os.path.isdir(source):
        return folder_splits(source, 64 if image_size is None else image_size, channels,
                             progress=progress, val_fraction=val_fraction, seed=seed, log=log)
    if os.path.exists(source):
        raise UserError(f"{source}: not a data set minicnn reads; --data takes a folder "
                        "(train/, val/, test/ with one folder per class), a MedMNIST .npz "
                        "file, or 'synthetic'")
    raise UserError(f"{source}: no such file or folder (--data takes a folder, a .npz file, "
                    "or 'synthetic')")
