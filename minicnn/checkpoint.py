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
import tempfile

import numpy as np

from .errors import UserError
from .npzfile import read_npz

FORMAT = "minicnn-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(UserError):
    """A checkpoint file that cannot be read or does not fit what it is used for."""


def _text(value):
    return np.array(json.dumps(value))


def write_npz_atomic(path, arrays):
    """Write {name: array} to `path` as .npz, atomically (see the module docstring)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                                   dir=folder)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        try:  # make the rename itself durable
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass
    except OSError as err:
        kept = " The previous checkpoint there is unchanged." if os.path.exists(path) else ""
        raise CheckpointError(f"{path}: could not write the checkpoint "
                              f"({err.strerror or err}).{kept}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(path, model, *, norm_mean, norm_std, classes, positive_class=1,
                    threshold=0.5, min_input_size=None, optimizer=None, scheduler=None,
                    epoch=0, batch=0, train_config=None, history=None, progress=None,
                    data_info=None):
    """Write a checkpoint of `model` (and, for resuming, its optimiser and schedule)."""
    from . import random as engine_random
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
        "rng_engine": _text(engine_random.get_state()),
        "train_config": _text(train_config or {}), "history": _text(history or []),
        "progress": _text(progress or {}), "data_info": _text(data_info or {}),
    }
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
    """A checkpoint read back (see load_checkpoint); `.build_model()` makes the network."""

    def __init__(self, path, arrays):
        self.path = path
        self.arrays = arrays
        get = self._get
        self.model_name = str(get("model_name"))
        self.model_config = self._json("model_config")
        self.weights = {k[len("weights/"):]: v for k, v in arrays.items() if k.startswith("weights/")}
        self.norm_mean = get("norm_mean").astype(np.float32)
        self.norm_std = get("norm_std").astype(np.float32)
        self.classes = [str(c) for c in get("classes")]
        self.positive_class = int(get("positive_class"))
        self.image_size = tuple(int(v) for v in get("image_size"))
        self.channels = int(get("channels"))
        self.min_input_size = int(get("min_input_size"))
        self.threshold = float(get("threshold"))
        self.epoch, self.batch = int(get("epoch")), int(get("batch"))
        self.rng_engine = self._json("rng_engine")
        self.train_config = self._json("train_config")
        self.history = self._json("history")
        self.progress = self._json("progress")
        self.data_info = self._json("data_info")
        self.optimizer_name = str(arrays["optimizer_name"]) if "optimizer_name" in arrays else None
        self.optimizer_state = {k[len("optimizer/"):]: v for k, v in arrays.items()
                                if k.startswith("optimizer/")}
        self.scheduler_name = str(arrays["scheduler_name"]) if "scheduler_name" in arrays else None
        self.scheduler_state = {k[len("scheduler/"):]: v for k, v in arrays.items()
                                if k.startswith("scheduler/")}

    def _get(self, key):
        if key not in self.arrays:
            raise CheckpointError(f"{self.path}: the checkpoint has no '{key}' entry; it was not "
                                  "written by this version of minicnn, or is damaged")
        return self.arrays[key]

    def _json(self, key):
        try:
            return json.loads(str(self._get(key)))
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{self.path}: the '{key}' entry is not valid JSON ({err})") from None

    def describe(self):
        return (f"{self.model_name} model, {self.channels}x{self.image_size[0]}x"
                f"{self.image_size[1]} input, classes {', '.join(self.classes)}")

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
        from .nn import models
        try:
            model = models.build(self.model_name, **self.model_config)
            model.load_state_dict(self.weights, strict=True)
        except UserError as err:
            raise CheckpointError(f"{self.path}: the saved weights do not fit the "
                                  f"{self.model_name} architecture it names: {err}") from None
        return model.to(device).eval()


def load_checkpoint(path):
    """Read a checkpoint written by save_checkpoint; CheckpointError naming the file otherwise."""
    path = os.fspath(path)
    arrays = read_npz(path, CheckpointError, "checkpoint")
    if str(arrays.get("format", "")) != FORMAT:
        raise CheckpointError(f"{path}: not a minicnn checkpoint (it holds "
                              f"{', '.join(sorted(arrays)[:6]) or 'nothing'})")
    version = int(arrays.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version}; this minicnn "
                              f"reads version {FORMAT_VERSION}")
    return Checkpoint(path, arrays)
