"""Checks at the door: every setting, label array and image array is checked here, once,
where it enters, before anything is trained.

Each check raises minicnn.errors.UserError with a message that names the flag (or
file and field), the value it got, and what would be right:

    --seed must be an integer from 0 to 4294967295, got -1
    data.npz: train_labels holds 7 at index 3; pneumoniamnist has 2 classes (labels 0 to 1)

The trainer's settings (minicnn.xray.settings), the data readers (minicnn.data.datasets) and the
checkpoint reader (minicnn.xray.checkpoint) call these; nothing else re-checks.
"""
import math
import os

import numpy as np

from .errors import UserError

# largest input side minicnn accepts: AlexNet's 227 and Kermany-sized crops fit, a typo does not
MAX_IMAGE_SIZE = 1024
MAX_SEED = 2 ** 32 - 1


# --- numbers -------------------------------------------------------------------------------------

def is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and \
        not isinstance(value, (bool, np.bool_))


def integer(flag, value, lo, hi=None, hint=""):
    """value must be an int in [lo, hi]; returns it as int."""
    if not is_int(value) or value < lo or (hi is not None and value > hi):
        span = f"from {lo} to {hi}" if hi is not None else f"of at least {lo}"
        what = "a positive integer" if lo == 1 else f"an integer {span}"
        right = f"; give {lo} to {hi}" if lo == 1 and hi is not None else ""
        raise UserError(f"{flag} must be {what}, got {value!r}{right}{hint}")
    return int(value)


def number(flag, value, lo=None, hi=None, lo_open=False, hi_open=False, what=None):
    """value must be a finite real number within the bounds; returns it as float."""
    ok = is_number(value) and math.isfinite(float(value))
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        if what is None:
            left = "(" if lo_open else "["
            right = ")" if hi_open else "]"
            what = f"a number in {left}{lo if lo is not None else '-inf'}, " \
                   f"{hi if hi is not None else 'inf'}{right}"
        raise UserError(f"{flag} must be {what}, got {value!r}")
    return float(value)


def choice(flag, value, options):
    if value not in options:
        raise UserError(f"{flag} must be one of {', '.join(map(str, options))}, got {value!r}")
    return value


def synthetic_sizes(flag, sizes):
    """None, or {"train": n >= 8, "val": n >= 4, "test": n >= 4} (any of them)."""
    if sizes is None:
        return None
    if not isinstance(sizes, dict) or set(sizes) - {"train", "val", "test"}:
        raise UserError(f"{flag} must be a dict of train/val/test sizes, got {sizes!r}")
    for split, n in sizes.items():
        integer(f"--synthetic-size ({split} images)", n, 4 if split != "train" else 8,
                10_000_000)
    return sizes


# --- memory --------------------------------------------------------------------------------------

def memory_budget():
    """Bytes minicnn lets one array set take: half the machine's memory (MINICNN_MAX_BYTES
    overrides)."""
    env = os.environ.get("MINICNN_MAX_BYTES")
    if env:
        try:
            return int(float(env))
        except ValueError:
            raise UserError(f"MINICNN_MAX_BYTES must be a number of bytes, got {env!r}") from None
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def fits_in_memory(what, nbytes, hint=""):
    """UserError unless nbytes fits the memory budget (checked before allocating)."""
    budget = memory_budget()
    if nbytes > budget:
        raise UserError(f"{what} would take {human_bytes(nbytes)} of memory, more than the "
                        f"{human_bytes(budget)} minicnn allows here{hint}")


def human_bytes(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024.0


# --- data arrays ---------------------------------------------------------------------------------

def labels(where, y, n_classes=None, source=""):
    """Class labels -> int64 (N,). They must be whole numbers >= 0 and, when n_classes is
    given, below it. `where` names the file and field ("data.npz: train_labels");
    `source` says where n_classes came from ("pneumoniamnist has 2 classes")."""
    y = np.asarray(y)
    if y.dtype.kind not in "iuf" or y.dtype.kind == "b":
        raise UserError(f"{where} holds {y.dtype} values; labels must be whole numbers "
                        "(class 0, 1, ...)")
    flat = y.reshape(-1)
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(flat) | (flat != np.round(flat)))
        if bad.size:
            k = int(bad[0])
            raise UserError(f"{where} holds {flat[k]!r} at index {k} ({bad.size} such); labels "
                            "must be whole numbers (class 0, 1, ...)")
    bad = np.flatnonzero(flat < 0)
    if bad.size:
        k = int(bad[0])
        raise UserError(f"{where} holds the negative label {flat[k]!r} at index {k}; labels "
                        "are class numbers 0, 1, ...")
    if n_classes is not None:
        bad = np.flatnonzero(flat >= n_classes)
        if bad.size:
            k = int(bad[0])
            values = sorted(set(int(v) for v in flat[bad][:1000]))
            raise UserError(f"{where} holds the label {int(flat[k])} at index {k} "
                            f"({bad.size} label(s) out of range: {', '.join(map(str, values[:5]))}); "
                            f"{source or f'the data has {n_classes} classes'} "
                            f"(labels 0 to {n_classes - 1})")
    return flat.astype(np.int64)


def image_values(where, x):
    """Image array -> float32 in [0, 1]: uint8 / 255, uint16 / 65535, float kept if finite and
    within [0, 1]. Any other dtype or range is refused, naming it."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255)
    if x.dtype == np.uint16:
        return x.astype(np.float32) / np.float32(65535)
    if x.dtype.kind == "f":
        if x.size:
            finite = np.isfinite(x)
            if not finite.all():
                k = np.unravel_index(int(np.argmin(finite)), x.shape)
                raise UserError(f"{where} holds {x[k]!r} at index {list(map(int, k))}; pixels "
                                "must be finite numbers in [0, 1]")
            lo, hi = float(x.min()), float(x.max())
            if lo < 0 or hi > 1:
                hint = " (it looks like 0-255: store it as uint8, or divide by 255)" \
                    if hi <= 255 and lo >= 0 else ""
                raise UserError(f"{where}: float pixels range from {lo:g} to {hi:g}; float "
                                f"images must lie in [0, 1]{hint}")
        return x.astype(np.float32)
    raise UserError(f"{where} holds {x.dtype} pixels; minicnn reads uint8 (0-255), uint16 "
                    "(0-65535) or float in [0, 1] (convert it to one of those)")


def splits_classes(where, counts, classes):
    """The classes present in each split (counts: {split: (K,) counts}) against training's:
    at least two classes in training, every split non-empty, nothing outside training's."""
    train = counts["train"]
    present = [c for c, n in zip(classes, train) if n > 0]
    if len(present) < 2:
        raise UserError(f"{where}: the training split holds only "
                        f"{'class ' + ', '.join(map(str, present)) if present else 'no images'}; "
                        "a classifier needs at least two classes to learn from")
    for split, n in counts.items():
        if int(np.sum(n)) == 0:
            raise UserError(f"{where}: the {split} split is empty; every split (train, val, "
                            "test) needs images")
        extra = [c for c, k, t in zip(classes, n, train) if k > 0 and t == 0]
        if extra:
            raise UserError(f"{where}: the {split} split holds class(es) {', '.join(map(str, extra))} "
                            "that the training split does not; the network could never "
                            "predict them")
