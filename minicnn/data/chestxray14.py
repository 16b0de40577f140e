"""NIH ChestX-ray14 as published: 112,120 frontal chest X-rays, up to 14 findings each.

The published folder (Wang et al. 2017, NIH Clinical Center) holds

    Data_Entry_2017.csv (or Data_Entry_2017_v2020.csv)
        Image Index, Finding Labels, Follow-up #, Patient ID, ...; Finding Labels joins
        findings with "|" ("Effusion|Mass"), or says "No Finding"
    images/*.png, or images_001/images/*.png ... images_012/images/*.png
    train_val_list.txt, test_list.txt        the official split, by patient

minicnn reads it as it is: the test split is test_list.txt; validation is carved from
train_val_list.txt by patient (seeded, `val_fraction` of the images), so no patient
is in two splits. Labels are (N, K) multi-hot over the findings asked for (all 14 by
default). splits.csv (image, patient, split) records the split for audit and reuse.
"""
import csv
import difflib
import glob
import os

import numpy as np

from ..atomic import atomic_write
from ..errors import UserError
from .cache import DecodedImages
from .multilabel import MultiLabelSet

# the 14 findings, in the order of the NIH paper and of MedMNIST's ChestMNIST labels
FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
            "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
            "Pleural_Thickening", "Hernia")
NO_FINDING = "No Finding"
COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
SPLIT_LISTS = {"train_val": "train_val_list.txt", "test": "test_list.txt"}


def entry_csv(root):
    """The Data_Entry_2017*.csv of a ChestX-ray14 folder, or None when it has none."""
    found = sorted(glob.glob(os.path.join(os.fspath(root), "Data_Entry_2017*.csv")))
    return found[0] if found else None


def is_chestxray14(root):
    return os.path.isdir(root) and entry_csv(root) is not None


def pick_findings(names):
    """The findings asked for (a comma list or a sequence), checked against the 14."""
    if names is None:
        return FINDINGS
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    by_lower = {f.lower(): f for f in FINDINGS}
    picked = []
    for name in names:
        canonical = by_lower.get(name.lower().replace(" ", "_"))
        if canonical is None:
            close = difflib.get_close_matches(name, FINDINGS, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"--labels: {name!r} is not a ChestX-ray14 finding{hint} "
                            f"(the 14: {', '.join(FINDINGS)})")
        if canonical not in picked:
            picked.append(canonical)
    if not picked:
        raise UserError("--labels: name at least one finding, e.g. --labels Pneumonia")
    return tuple(picked)


def read_entries(path):
    """[(image, patient, set of findings)] from Data_Entry_2017*.csv, checked row by row."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(f"{path}: missing the column(s) {', '.join(missing)}; a "
                                f"ChestX-ray14 entry file has {', '.join(COLUMNS)}, ... (it has "
                                f"{', '.join((reader.fieldnames or [])[:6]) or 'no header'})")
            entries, seen = [], set()
            for line, row in enumerate(reader, start=2):
                image = (row["Image Index"] or "").strip()
                patient = (row["Patient ID"] or "").strip()
                if not image or not patient:
                    raise UserError(f"{path}, line {line}: empty Image Index or Patient ID")
                if image in seen:
                    raise UserError(f"{path}, line {line}: image {image} is listed twice")
                seen.add(image)
                findings = _findings(row["Finding Labels"] or "", path, line)
                entries.append((image, patient, findings))
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror})") from None
    except (csv.Error, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not a readable CSV file ({err})") from None
    if not entries:
        raise UserError(f"{path}: lists no images")
    return entries


def _findings(text, path, line):
    parts = [p.strip() for p in text.split("|") if p.strip()]
    if parts == [NO_FINDING]:
        return frozenset()
    unknown = [p for p in parts if p not in FINDINGS]
    if unknown or not parts:
        value = unknown[0] if unknown else text
        close = difflib.get_close_matches(value, FINDINGS, n=2, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"{path}, line {line}: Finding Labels {text!r}: {value!r} is not one of "
                        f"the 14 findings nor {NO_FINDING!r}{hint}")
    return frozenset(parts)


def image_paths(root):
    """{file name: path} of every image under images/ or images_NNN/images/."""
    folders = [os.path.join(root, "images")] + sorted(glob.glob(os.path.join(root, "images_*",
                                                                               "images")))
    found = {}
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            if entry.is_file() and not entry.name.startswith("."):
                found.setdefault(entry.name, entry.path)
    return found


def read_list(root, name):
    path = os.path.join(root, SPLIT_LISTS[name])
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        raise UserError(f"{root}: no {SPLIT_LISTS[name]}; ChestX-ray14's official split comes "
                        f"as {SPLIT_LISTS['train_val']} and {SPLIT_LISTS['test']} beside the "
                        "entry file") from None
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror})") from None


def assign_splits(entries, train_val, test, val_fraction=0.1, seed=0, source=""):
    """{image: "train" | "val" | "test"}: the official test list, and val carved by patient."""
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"--val-fraction: {val_fraction} must be between 0 and 1 (exclusive)")
    patient = {image: p for image, p, _ in entries}
    for name, listed in (("train_val_list.txt", train_val), ("test_list.txt", test)):
        unknown = [i for i in listed if i not in patient]
        if unknown:
            raise UserError(f"{source}: {len(unknown)} image(s) in {name} are not in the entry "
                            f"file, e.g. {', '.join(unknown[:3])}")
    both = set(train_val) & set(test)
    if both:
        raise UserError(f"{source}: {len(both)} image(s) are in both official lists, e.g. "
                        f"{', '.join(sorted(both)[:3])}")
    shared = {patient[i] for i in train_val} & {patient[i] for i in test}
    if shared:
        raise UserError(f"{source}: {len(shared)} patient(s) have images in both "
                        f"train_val_list.txt and test_list.txt (e.g. patient "
                        f"{sorted(shared)[0]}); the official split keeps each patient in one")
    patients = sorted({patient[i] for i in train_val})
    order = np.random.default_rng(seed).permutation(len(patients))
    count = {}
    for image in train_val:
        count[patient[image]] = count.get(patient[image], 0) + 1
    target, taken, val_patients = val_fraction * len(train_val), 0, set()
    for k in order:
        if taken >= target:
            break
        val_patients.add(patients[k])
        taken += count[patients[k]]
    split = {i: ("val" if patient[i] in val_patients else "train") for i in train_val}
    split.update({i: "test" for i in test})
    return split


def write_splits_csv(path, entries, split):
    rows = ["image,patient,split"] + [f"{image},{p},{split[image]}" for image, p, _ in entries
                                     if image in split]
    atomic_write(path, lambda f: f.write(("\n".join(rows) + "\n").encode()))


class LazyImages:
    """The images of some cache rows as float32 in [0, 1], decoded from uint8 only when
    indexed: lazy[idx] -> (len(idx), C, S, S). Behaves like the in-memory `images` array
    for indexing and slicing, without ever holding the whole split in memory."""

    def __init__(self, cache, rows):
        self.cache, self.rows = cache, rows

    @property
    def shape(self):
        return (int(self.rows.size),) + tuple(self.cache.array.shape[1:])

    def __len__(self):
        return int(self.rows.size)

    def __getitem__(self, index):
        picked = self.rows[index]
        return self.cache.array[picked].astype(np.float32) / np.float32(255)


class MultiLabelImages(MultiLabelSet):
    """Images from a DecodedImages cache with (N, K) float32 multi-hot labels.

    get_batch(indices, rng) -> (images (B, C, S, S) float32 in [0, 1], labels (B, K)),
    with `transform(image, rng)` applied per image when given; memory holds a batch,
    not the data set.
    """

    def __init__(self, cache, rows, labels, classes, name="", transform=None):
        self.cache, self.rows = cache, np.asarray(rows, dtype=np.int64)
        super().__init__(LazyImages(cache, self.rows), labels, classes, transform, name,
                         [cache.files[r] for r in self.rows])

    def with_transform(self, transform):
        return MultiLabelImages(self.cache, self.rows, self.labels, self.classes, self.name,
                                transform)


def open_chestxray14(root, image_size, channels=1, labels=None, val_fraction=0.1, seed=0,
                     progress=False, log=print, splits_csv=None):
    """{"train", "val", "test"}: MultiLabelImages of a ChestX-ray14 folder, and an info dict.

    Every listed image must exist; the images are decoded once into the cache.
    """
    root = os.fspath(root)
    csv_path = entry_csv(root)
    if csv_path is None:
        raise UserError(f"{root}: no Data_Entry_2017*.csv; not a ChestX-ray14 folder")
    findings = pick_findings(labels)
    entries = read_entries(csv_path)
    paths = image_paths(root)
    missing = [image for image, _, _ in entries if image not in paths]
    if missing:
        raise UserError(f"{root}: {len(missing)} image(s) listed in "
                        f"{os.path.basename(csv_path)} are not under images/ or "
                        f"images_NNN/images/, e.g. {', '.join(missing[:3])}")
    split = assign_splits(entries, read_list(root, "train_val"), read_list(root, "test"),
                          val_fraction, seed, root)
    kept = [e for e in entries if e[0] in split]
    cache = DecodedImages([paths[image] for image, _, _ in kept], image_size, channels)
    if not cache.complete:
        log(f"decoding {len(kept)} ChestX-ray14 images at {image_size}px into {cache.folder} "
            "(once; later runs at this size reuse it)")
    cache.build(progress=progress, log=log)
    multi_hot = np.array([[f in found for f in findings] for _, _, found in kept], np.float32)
    out = {}
    for name in ("train", "val", "test"):
        rows = [r for r, (image, _, _) in enumerate(kept) if split[image] == name]
        if not rows:
            raise UserError(f"{root}: the {name} split is empty")
        out[name] = MultiLabelImages(cache, rows, multi_hot[rows], findings, name=name)
    if not out["train"].positives().all():
        absent = [f for f, n in zip(findings, out["train"].positives()) if n == 0]
        raise UserError(f"{root}: no training image has {', '.join(absent)}; a finding needs "
                        "positive examples to be learned (choose others with --labels)")
    if splits_csv:
        write_splits_csv(splits_csv, kept, split)
    info = {"source": f"ChestX-ray14 {root}", "synthetic": False, "multilabel": True,
            "findings": list(findings), "cache": cache.folder,
            "splits": {n: {"images": len(d), "patients": len({e[1] for e in kept
                                                              if split[e[0]] == n}),
                           "positives": dict(zip(findings, d.positives().tolist()))}
                       for n, d in out.items()},
            "unlisted_images": len(entries) - len(kept)}
    return out, info
