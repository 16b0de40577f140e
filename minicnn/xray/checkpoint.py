"""Checkpoints: a trained network and everything needed to use it or to go on training it.

One .npz file (numpy's zip of arrays), read with np.load(allow_pickle=False), so
opening a checkpoint can never run code. Every entry is a numpy array; text (the
model's settings, the history) is JSON in a 0-d unicode array. Entries:

    format                "minicnn-checkpoint"; format_version 1
    model_name            "chestxray" | "alexnet"
    model_config          JSON: the model's constructor arguments (model.config())
    weights/<name>        every parameter and buffer (model.state_dict())
    norm_mean, norm_std   (C,) the normalisation the network was trained with
    classes               (K,) class names; positive_class: the index called "positive"
    image_size            (2,) height, width; channels; min_input_size
    threshold             P(positive) >= threshold is called positive (chosen on val)
    multilabel            1 when each class is a finding with its own sigmoid output
                          (ChestX-ray14); then thresholds (K,): one per finding, on val
    epoch, batch          training progress: epochs done, batches done in the next one
    optimizer_name, optimizer/<key>, scheduler/<key>     optimiser and schedule state
    rng_engine            JSON: minicnn.random's generator state (dropout masks)
    train_config, history, progress, data_info           JSON: what resuming needs

Writing is atomic: the file is written under a temporary name in the same folder,
flushed to disk (fsync), then renamed over the old one (os.replace), so a crash or a
full disk leaves the previous checkpoint whole.
"""
import json
import os

import numpy as np

from minicnn import random as engine_random
from minicnn.atomic import atomic_write
from minicnn.errors import UserError
from minicnn.nn import models
from minicnn.npzfile import read_npz
from minicnn.validate import MAX_IMAGE_SIZE, is_int

FORMAT = "minicnn-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(UserError):
    """A checkpoint file that cannot be read or does not fit what it is used for."""


def _text(value):
    return np.array(json.dumps(value))


def write_npz_atomic(path, arrays):
    """Write {name: array} to `path` as .npz, atomically (minicnn/atomic.py)."""
    path = os.fspath(path)
    try:
        atomic_write(path, lambda f: np.savez(f, **arrays))
    except OSError as err:
        kept = " The previous checkpoint there is unchanged." if os.path.exists(path) else ""
        raise CheckpointError(f"{path}: could not write the checkpoint "
                              f"({err.strerror or err}).{kept}") from None


def save_checkpoint(path, model, *, norm_mean, norm_std, classes, positive_class=1,
                    threshold=0.5, min_input_size=None, optimizer=None, scheduler=None,
                    epoch=0, batch=0, train_config=None, history=None, progress=None,
                    data_info=None, multilabel=False, thresholds=None):
    """Write a checkpoint of `model` (and, for resuming, its optimiser and schedule)."""
    arrays = {
        "format": np.array(FORMAT), "format_version": np.array(FORMAT_VERSION),
        "model_name": np.array(model.name), "model_config": _text(model.config()),
        "norm_mean": np.asarray(norm_mean, np.float32).reshape(-1),
        "norm_std": np.asarray(norm_std, np.float32).reshape(-1),
        "classes": np.array([str(c) for c in classes]),
        "positive_class": np.array(int(positive_class)),
        "image_size": np.asarray(model.image_size, np.int64),
        "channels": np.array(int(model.in_channels)),
        "min_input_size": np.array(int(min_input_size or min(model.image_size))),
        "threshold": np.array(float(threshold)),
        "epoch": np.array(int(epoch)), "batch": np.array(int(batch)),
        "multilabel": np.array(int(bool(multilabel))),
        "rng_engine": _text(engine_random.get_state()),
        "train_config": _text(train_config or {}), "history": _text(history or []),
        "progress": _text(progress or {}), "data_info": _text(data_info or {}),
    }
    if multilabel:
        arrays["thresholds"] = np.asarray(thresholds, np.float64).reshape(-1)
    for name, value in model.state_dict().items():
        arrays[f"weights/{name}"] = value
    if optimizer is not None:
        arrays["optimizer_name"] = np.array(type(optimizer).__name__)
        for key, value in optimizer.state_dict().items():
            arrays[f"optimizer/{key}"] = np.asarray(value)
    if scheduler is not None:
        arrays["scheduler_name"] = np.array(type(scheduler).__name__)
        for key, value in scheduler.state_dict().items():
            arrays[f"scheduler/{key}"] = np.asarray(value)
    write_npz_atomic(path, arrays)


class Checkpoint:
    """A checkpoint read back (see load_checkpoint); `.build_model()` makes the network.

    Every field is checked here, once, for its kind, shape and range (finite weights, a
    threshold in [0, 1], a sane input size, ...): a CheckpointError names the field.
    """

    def __init__(self, path, arrays):
        self.path = path
        self.arrays = arrays
        self.model_name = self._str("model_name")
        self.model_config = self._json("model_config", dict)
        self.weights = {k[len("weights/"):]: self._numeric(k, "iuf") for k in arrays
                        if k.startswith("weights/")}
        if not self.weights:
            raise self._bad("weights/...", "no weight arrays", "the network's parameters")
        self.classes = self._strings("classes")
        self.channels = self._int("channels", 1, 3)
        if self.channels not in (1, 3):
            raise self._bad("channels", self.channels, "1 (gray) or 3 (colour)")
        self.norm_mean = self._floats("norm_mean", (self.channels,))
        self.norm_std = self._floats("norm_std", (self.channels,))
        if (self.norm_std <= 0).any():
            raise self._bad("norm_std", self.norm_std.tolist(), "positive numbers")
        self.positive_class = self._int("positive_class", 0, len(self.classes) - 1)
        size = self._get("image_size")
        if size.shape != (2,) or size.dtype.kind not in "iu" or (size < 1).any() or \
                (size > MAX_IMAGE_SIZE).any():
            raise self._bad("image_size", size.tolist() if size.dtype.kind in "iuf" else size,
                            f"(height, width), whole numbers from 1 to {MAX_IMAGE_SIZE}")
        self.image_size = tuple(int(v) for v in size)
        self.min_input_size = self._int("min_input_size", 1, MAX_IMAGE_SIZE)
        self.threshold = self._float("threshold", 0.0, 1.0)
        self.epoch, self.batch = self._int("epoch", 0, 10 ** 9), self._int("batch", 0, 10 ** 9)
        # older checkpoints have no 'multilabel' entry: one-label classifiers
        self.multilabel = bool(self._int("multilabel", 0, 1)) if "multilabel" in arrays else False
        self.thresholds = None
        if self.multilabel:
            self.thresholds = self._floats("thresholds", (len(self.classes),)).astype(np.float64)
            if ((self.thresholds < 0) | (self.thresholds > 1)).any():
                raise self._bad("thresholds", self.thresholds.tolist(),
                                f"{len(self.classes)} numbers in [0, 1], one per finding")
        elif "thresholds" in arrays:
            raise self._bad("thresholds", "present", "absent in a one-label checkpoint "
                            "(multilabel is 0)")
        self.rng_engine = self._json("rng_engine", dict)
        self.train_config = self._json("train_config", dict)
        self.history = self._json("history", list)
        self.progress = self._json("progress", dict)
        self.data_info = self._json("data_info", dict)
        self.optimizer_name = self._str("optimizer_name") if "optimizer_name" in arrays else None
        self.optimizer_state = {k[len("optimizer/"):]: self._numeric(k) for k in arrays
                                if k.startswith("optimizer/")}
        self.scheduler_name = self._str("scheduler_name") if "scheduler_name" in arrays else None
        self.scheduler_state = {k[len("scheduler/"):]: self._numeric(k) for k in arrays
                                if k.startswith("scheduler/")}
        self._check_config()

    # field readers: each refuses a value of the wrong kind, shape or range by name -------------
    def _bad(self, key, value, want):
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return CheckpointError(f"{self.path}: the '{key}' entry is {shown}; it should be {want} "
                               "(the checkpoint is damaged or was not written by minicnn)")

    def _get(self, key):
        if key not in self.arrays:
            raise CheckpointError(f"{self.path}: the checkpoint has no '{key}' entry; it was not "
                                  "written by this version of minicnn, or is damaged")
        return self.arrays[key]

    def _scalar(self, key, kinds, want):
        a = self._get(key)
        if a.shape != () or a.dtype.kind not in kinds:
            raise self._bad(key, a if a.size <= 4 else f"{a.dtype} array {a.shape}", want)
        return a[()]

    def _str(self, key):
        return str(self._scalar(key, "U", "a text"))

    def _int(self, key, lo, hi):
        want = f"a whole number from {lo} to {hi}"
        v = self._scalar(key, "iu", want)
        if not lo <= v <= hi:
            raise self._bad(key, int(v), want)
        return int(v)

    def _float(self, key, lo, hi):
        want = f"a number in [{lo:g}, {hi:g}]"
        v = float(self._scalar(key, "iuf", want))
        if not (np.isfinite(v) and lo <= v <= hi):
            raise self._bad(key, v, want)
        return v

    def _floats(self, key, shape=None):
        a = self._get(key)
        want = f"finite float numbers{f' of shape {shape}' if shape else ''}"
        if a.dtype.kind != "f" or (shape is not None and a.shape != shape):
            raise self._bad(key, f"{a.dtype} array of shape {a.shape}", want)
        if not np.isfinite(a).all():
            raise self._bad(key, f"an array holding {int((~np.isfinite(a)).sum())} NaN or "
                            "infinite value(s)", want)
        return a.astype(np.float32) if a.dtype != np.float64 else a

    def _numeric(self, key, kinds="biuf"):
        a = self._get(key)
        if a.dtype.kind not in kinds:
            raise self._bad(key, f"{a.dtype} array of shape {a.shape}", "an array of numbers")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise self._bad(key, f"an array holding {int((~np.isfinite(a)).sum())} NaN or "
                            "infinite value(s)", "finite numbers")
        return a

    def _strings(self, key):
        a = self._get(key)
        if a.ndim != 1 or a.dtype.kind != "U" or a.size < 2 or len(set(a.tolist())) != a.size:
            raise self._bad(key, a.tolist() if a.size <= 8 else f"{a.dtype} array {a.shape}",
                            "two or more distinct class names")
        return [str(c) for c in a]

    def _json(self, key, kind):
        try:
            value = json.loads(str(self._scalar(key, "U", "JSON text")))
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{self.path}: the '{key}' entry is not valid JSON ({err})") from None
        if not isinstance(value, kind):
            raise self._bad(key, value, f"a JSON {'object' if kind is dict else 'list'}")
        return value

    def _check_config(self):
        """The model's settings: a sane input size (the network is built from them)."""
        size = self.model_config.get("image_size", self.image_size)
        sides = size if isinstance(size, (list, tuple)) else [size]
        if not (1 <= len(sides) <= 2 and all(is_int(v) and 1 <= v <= MAX_IMAGE_SIZE
                                             for v in sides)):
            raise self._bad("model_config", self.model_config, "settings with an image_size of "
                            f"whole numbers from 1 to {MAX_IMAGE_SIZE}")

    @property
    def tta(self):
        """How the network was scored when it was trained ("none" or "flip", the --tta of
        its run), so that evaluate and predict score it the same way."""
        tta = self.train_config.get("tta", "none")
        if tta not in ("none", "flip"):
            raise CheckpointError(f"{self.path}: train_config's tta is {tta!r}; expected "
                                  "'none' or 'flip'")
        return tta

    def describe(self):
        what = "findings" if self.multilabel else "classes"
        return (f"{self.model_name} model, {self.channels}x{self.image_size[0]}x"
                f"{self.image_size[1]} input, {what} {', '.join(self.classes)}")

    def check_matches(self, model_name=None, model_config=None):
        """CheckpointError unless this checkpoint holds that architecture and configuration."""
        if model_name is not None and model_name != self.model_name:
            raise CheckpointError(f"{self.path}: holds a {self.describe()}, not a {model_name} "
                                  "model; use a checkpoint of that architecture, or another "
                                  "--out folder for a new run")
        if model_config is not None:
            diff = {k: (self.model_config.get(k), v) for k, v in model_config.items()
                    if self.model_config.get(k) != v}
            if diff:
                detail = ", ".join(f"{k}: saved {a!r}, asked {b!r}" for k, (a, b) in diff.items())
                raise CheckpointError(f"{self.path}: holds a {self.model_name} model with other "
                                      f"settings ({detail}); use another --out folder for a new run")

    def build_model(self, device="cpu"):
        """The network, with the saved weights, in eval mode on `device`."""
        try:
            model = models.build(self.model_name, **self.model_config)
            model.load_state_dict(self.weights, strict=True)
        except (UserError, TypeError, ValueError) as err:
            raise CheckpointError(f"{self.path}: the saved weights do not fit the "
                                  f"{self.model_name} architecture it names: {err}") from None
        return model.to(device).eval()


def load_checkpoint(path):
    """Read a checkpoint written by save_checkpoint; CheckpointError naming the file otherwise."""
    path = os.fspath(path)
    arrays = read_npz(path, CheckpointError, "checkpoint")
    fmt = arrays.get("format")
    if fmt is None or fmt.shape != () or str(fmt) != FORMAT:
        raise CheckpointError(f"{path}: not a minicnn checkpoint (it holds "
                              f"{', '.join(sorted(arrays)[:6]) or 'nothing'})")
    version = arrays.get("format_version", np.array(-1))
    version = int(version) if version.shape == () and version.dtype.kind in "iu" else -1
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version}; this minicnn "
                              f"reads version {FORMAT_VERSION}")
    return Checkpoint(path, arrays)
