"""Training and evaluation: fit() runs the whole recipe, evaluate() scores a network.

fit(config) does, in order:
  1. open the data (train / val / test), compute the normalisation on train
  2. build the model, the optimiser (SGD or Adam) and a cosine learning-rate schedule
  3. each epoch: mini-batches of augmented training images -> cross-entropy (class
     weighted, or balanced batches, if asked) -> backward -> optimiser step; then
     score the validation split; keep the epoch with the best validation ROC-AUC
     (best.npz) and the latest state (last.npz, for resuming)
  4. on the best network: score validation, then the test split once, at the decision
     threshold (--threshold: 0.5, or chosen on validation by Youden's J), and write
     metrics.json

Multi-label data (ChestX-ray14, ChestMNIST) trains one sigmoid output per finding with
binary cross-entropy with logits (`--balance weights`: pos_weight = negatives / positives
of each finding on train); each finding gets its own threshold on validation (by default), and the
network kept is the one with the best mean validation AUC. A single finding
(`--labels Pneumonia`) is a two-class task and takes the one-label path above.

The test split is touched once, at the end: nothing is chosen by looking at it.

One run per folder: fit() holds the output folder's lock (minicnn.xray.runlock) from start to
end, so a second run into it is refused, and a killed run's temporary files are swept.

Stopping and resuming: Ctrl-C (or SIGTERM) stops after the current batch and saves a
checkpoint (last.npz) from which `--resume` continues to the very weights an uninterrupted run
reaches: the batches' order and augmentation come from (seed, epoch, batch) alone
(see minicnn.data.loader), and the checkpoint holds the optimiser, the schedule and
the engine's random state. A NaN loss stops training without saving, so the last
checkpoint on disk is the last good one.
"""
import json
import os
import signal
import threading
import time

import numpy as np

from minicnn import functional as F
from minicnn import random as engine_random
from minicnn import validate
from minicnn.atomic import atomic_write
from minicnn.autograd import no_grad
from minicnn.data.batch_augment import BatchCompose, BatchNormalize, augmentation_batch
from minicnn.data.datasets import open_splits
from minicnn.data.loader import DataLoader
from minicnn.data.sampling import balanced_sampler, class_weights
from minicnn.errors import UserError
from minicnn.nn import models
from minicnn.optim import SGD, Adam, CosineAnnealingLR
from minicnn.tensor import Tensor

from . import metrics as M
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint, write_npz_atomic
from .runlock import RunLock
from .settings import DEFAULT_AVERAGE_LAST, DEFAULT_EPOCHS, DEFAULT_LR, DEFAULTS
from . import settings as _settings

# the files a run leaves in its --out folder: any of them means "a run is here"
RUN_OUTPUTS = ("metrics.json", "best.npz", "last.npz", "average.npz")


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM: a resumable checkpoint was saved at `path`; `signum` is the
    signal that asked for the stop (None when the stop came from elsewhere)."""

    def __init__(self, path, epoch, batch, signum=None):
        super().__init__(f"stopped at epoch {epoch + 1}, batch {batch}; saved {path}")
        self.path, self.epoch, self.batch, self.signum = path, epoch, batch, signum


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite: training stopped, nothing was saved over."""


def resolve_config(**given):
    """DEFAULTS updated with the given values; None means "use the default"."""
    cfg = dict(DEFAULTS)
    cfg.update({k: v for k, v in given.items() if v is not None})
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"fit: unknown settings {sorted(unknown)}")
    validate.choice(_settings.flag("optimizer"), cfg["optimizer"], tuple(DEFAULT_LR))
    if cfg["lr"] is None:
        cfg["lr"] = DEFAULT_LR[cfg["optimizer"]]
    if cfg["epochs"] is None:
        cfg["epochs"] = DEFAULT_EPOCHS["synthetic" if cfg["data"] == "synthetic" else "other"]
    if cfg["average_last"] is None and isinstance(cfg["epochs"], int):
        cfg["average_last"] = min(DEFAULT_AVERAGE_LAST, cfg["epochs"])
    if cfg["model"] == "alexnet" and cfg["image_size"] is None:
        cfg["image_size"] = 227
    _settings.check(cfg)  # every value, by its flag, once
    if cfg["data"] != "synthetic":
        cfg["data"] = os.fspath(cfg["data"])
    cfg["out"] = os.fspath(cfg["out"])
    return cfg


def multilabel_loss(logits, target, pos_weight=None, label_smoothing=0.0):
    """Binary cross-entropy with logits, averaged over images and findings; pos_weight (K,)
    scales the loss of each finding's positive cases. Label smoothing eps moves each 0/1
    target to eps/2 / 1 - eps/2.
    logits (N, K) Tensor, target (N, K) float32 Tensor (0/1) -> () Tensor
    """
    if label_smoothing > 0:
        target = target * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)


def classification_loss(logits, target, weight=None, label_smoothing=0.0):
    """Cross-entropy, class-weighted if `weight` (K,) is given; with label smoothing eps:

        (1 - eps) * CE + eps * mean_n (1/K) sum_k -log p[n, k]

    i.e. the target is 1 - eps on the true class plus eps spread evenly over all K
    classes (PyTorch's label_smoothing when there are no class weights), which keeps
    the network from driving its outputs to 0 and 1.
    logits (N, K) Tensor, target (N,) int64 Tensor -> () Tensor
    """
    loss = F.cross_entropy(logits, target, weight=weight)
    if label_smoothing > 0:
        uniform = -F.log_softmax(logits, dim=1).mean(axis=1).mean()
        loss = loss * (1.0 - label_smoothing) + uniform * label_smoothing
    return loss


# --- scoring -----------------------------------------------------------------------------------------

def positive_index(classes):
    """The class called positive: PNEUMONIA where there is one, else class 1."""
    upper = [c.upper() for c in classes]
    return upper.index("PNEUMONIA") if "PNEUMONIA" in upper else min(1, len(classes) - 1)


def normalise(images, mean, std):
    """images float32 (N, C, H, W) -> (images - mean[c]) / std[c]."""
    return ((images - mean.reshape(1, -1, 1, 1)) / std.reshape(1, -1, 1, 1)).astype(np.float32)


def channel_stats(images, chunk=1024):
    """(mean (C,), std (C,)) float32 of images (N, C, H, W), read `chunk` images at a time
    (a cache-backed split is never held whole); a flat channel gets std 1."""
    n, c = images.shape[0], images.shape[1]
    total, squares, count = np.zeros(c), np.zeros(c), 0
    for i in range(0, n, chunk):
        x = np.asarray(images[i:i + chunk], dtype=np.float64)
        total += x.sum(axis=(0, 2, 3))
        squares += (x * x).sum(axis=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - mean * mean, 0.0))
    std = np.where(std > 1e-6, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def _views(x, tta):
    """The images a network scores for a batch x (N, C, H, W) numpy: x itself, and with
    tta "flip" also its mirror image (left and right swapped)."""
    return [x] if tta == "none" else [x, np.ascontiguousarray(x[..., ::-1])]


def predict_multilabel(model, images, mean, std, batch_size=256, device="cpu", tta="none"):
    """P(finding present) for each finding: sigmoid of the logits (tta "flip": the mean of
    the image's and its mirror image's probabilities).

    images (N, C, H, W) in [0, 1] (an array, or anything sliced the same way) -> (N, K)
    float64 numpy; the logits too (of the mean probability), for the loss.
    """
    model.eval()
    probs, logits = [], []
    with no_grad():
        for i in range(0, images.shape[0], batch_size):
            x = normalise(np.asarray(images[i:i + batch_size]), mean, std)
            views = [model(Tensor(v, device=device)).numpy().astype(np.float64)
                     for v in _views(x, tta)]
            p = np.mean([1.0 / (1.0 + np.exp(-z)) for z in views], axis=0)
            z = views[0] if len(views) == 1 else np.log(p) - np.log1p(-p)
            logits.append(z)
            probs.append(p)
    k = logits[0].shape[1] if logits else 0
    return (np.concatenate(probs) if probs else np.zeros((0, k)),
            np.concatenate(logits) if logits else np.zeros((0, k)))


def score_multilabel(probs, logits, labels, classes, thresholds=None):
    """Per-finding metrics (minicnn.xray.metrics.multilabel_metrics) plus the mean BCE loss."""
    out = M.multilabel_metrics(labels, probs, classes, thresholds)
    y = np.asarray(labels, dtype=np.float64)
    # BCE with logits, stable: max(z, 0) - z y + log(1 + exp(-|z|))
    bce = np.maximum(logits, 0) - logits * y + np.log1p(np.exp(-np.abs(logits)))
    out["loss"] = float(bce.mean()) if bce.size else float("nan")
    out["accuracy"] = float(((probs >= 0.5) == (y > 0.5)).mean()) if y.size else float("nan")
    return out


def predict(model, images, batch_size=256, device="cpu", tta="none"):
    """Class probabilities and log-probabilities of normalised images (tta "flip": the mean
    of the image's and its mirror image's probabilities).

    images float32 (N, C, H, W) -> (probs (N, K), log_probs (N, K)) float64 numpy
    """
    model.eval()
    logps = []
    with no_grad():
        for i in range(0, images.shape[0], batch_size):
            views = [F.log_softmax(model(Tensor(v, device=device)), dim=1).numpy()
                     .astype(np.float64) for v in _views(images[i:i + batch_size], tta)]
            logps.append(views[0] if len(views) == 1 else
                         np.log(np.mean([np.exp(v) for v in views], axis=0)))
    logp = np.concatenate(logps) if logps else np.zeros((0, 2))
    return np.exp(logp), logp


def score(probs, logp, labels, positive, threshold=None):
    """Metrics of one split: binary ones at `threshold` (Youden's J on these data when
    None) for two classes, accuracy and mean one-vs-rest AUC otherwise; plus the loss."""
    loss = float(-logp[np.arange(labels.size), labels].mean()) if labels.size else float("nan")
    if probs.shape[1] == 2:
        y = (labels == positive).astype(np.int64)
        p = probs[:, positive]
        if threshold is None:
            threshold = M.youden_threshold(y, p)
        out = M.binary_metrics(y, p, threshold)
    else:
        out = M.multiclass_metrics(labels, probs)
    out["loss"] = loss
    return out


def evaluate(model, dataset, mean, std, positive, threshold=None, batch_size=256, device="cpu",
             tta="none"):
    """(metrics, probs) of `model` on a split (see score(); multi-label data: see
    score_multilabel(), with `threshold` the (K,) per-finding thresholds or None);
    tta: "none" or "flip" (see predict())."""
    if getattr(dataset, "multilabel", False):
        probs, logits = predict_multilabel(model, dataset.images, mean, std, batch_size, device,
                                           tta)
        if not np.isfinite(probs).all():
            raise NonFiniteLoss(f"the network's outputs on {dataset.name} are NaN or infinite")
        return score_multilabel(probs, logits, dataset.labels, dataset.classes, threshold), probs
    probs, logp = _predict_chunked(model, dataset.images, mean, std, batch_size, device, tta)
    if not np.isfinite(probs).all():
        raise NonFiniteLoss(f"the network's outputs on {dataset.name} are NaN or infinite")
    return score(probs, logp, dataset.labels, positive, threshold), probs


def _predict_chunked(model, images, mean, std, batch_size, device, tta, chunk=4096):
    """predict() over `images` read `chunk` at a time (a cache-backed split stays on disk)."""
    if isinstance(images, np.ndarray) and images.shape[0] <= chunk:
        return predict(model, normalise(images, mean, std), batch_size, device, tta)
    parts = [predict(model, normalise(np.asarray(images[i:i + chunk]), mean, std), batch_size,
                     device, tta) for i in range(0, images.shape[0], chunk)]
    if not parts:
        return predict(model, np.zeros((0,) + tuple(images.shape[1:]), np.float32))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# --- stopping with Ctrl-C ------------------------------------------------------------------------------

class _StopRequest:
    """While active, the first Ctrl-C (SIGINT) or SIGTERM asks training to stop after the
    current batch; a second one stops at once (KeyboardInterrupt). `signum` remembers
    which signal asked, so the command can exit with 128 + its number."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, log):
        self.requested, self.log, self.previous, self.signum = False, log, {}, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            stop = KeyboardInterrupt()
            stop.signum = signum  # the command exits with 128 + signum
            raise stop
        self.requested, self.signum = True, signum
        what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        self.log(f"\n{what}: stopping after this batch and saving a checkpoint "
                 "(press Ctrl-C again to stop at once)")

    def __exit__(self, *exc):
        for sig, previous in self.previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        return False


# --- the training run -----------------------------------------------------------------------------------

def train_step(model, loss_fn, optimizer, x, y):
    """One step of training on a batch: forward, loss, gradients, one optimiser step.

    x (N, C, H, W) Tensor, y (N,) class indices (or (N, K) 0/1 findings); loss_fn(logits, y)
    returns a scalar Tensor. Returns (logits, the loss as a float). A loss that is not
    finite is returned before any gradient or step, the weights untouched, so the caller
    can say where it happened (Run.train_epoch raises NonFiniteLoss).
    """
    with np.errstate(over="ignore", invalid="ignore"):  # a NaN is reported by the caller
        logits = model(x)
        loss = loss_fn(logits, y)
    value = loss.item()
    if np.isfinite(value):
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return logits, value


class Run:
    """Everything fit() builds: data, model, optimiser, schedule, loader, and history."""

    def __init__(self, cfg, log=print, progress=True):
        self.cfg, self.log, self.progress = cfg, log, progress
        self.out = cfg["out"]
        self.last_path = os.path.join(self.out, "last.npz")
        self.best_path = os.path.join(self.out, "best.npz")
        self.average_path = os.path.join(self.out, "average.npz")
        self._average = None                        # the running sum (see _add_to_average)
        channels = 3 if cfg["model"] == "alexnet" else 1
        self.splits = open_splits(cfg["data"], cfg["image_size"], channels, seed=cfg["seed"],
                                  synthetic_sizes=cfg["synthetic_sizes"], progress=progress,
                                  labels=cfg["labels"], val_fraction=cfg["val_fraction"],
                                  splits_csv=os.path.join(self.out, "splits.csv"), log=log)
        train = self.splits.train
        self.multilabel = bool(getattr(train, "multilabel", False))
        self.classes = list(train.classes)
        self.positive = 0 if self.multilabel else positive_index(self.classes)
        self.threshold = self._threshold(cfg["threshold"])
        if self.multilabel and cfg["balance"] == "sampler":
            raise UserError("--balance sampler draws balanced batches of one-label classes; "
                            "multi-label data (several findings per image) takes "
                            "--balance weights (a pos_weight per finding) or none")
        self.mean, self.std = channel_stats(train.images)
        info = self.splits.info
        self.min_input_size = info.get("native_size", train.image_shape[1])

        engine_random.manual_seed(cfg["seed"])
        self.model = models.build(cfg["model"], in_channels=channels,
                                  num_classes=len(self.classes),
                                  image_size=list(train.image_shape[1:]), dropout=cfg["dropout"])
        self.model.to(cfg["device"])
        if cfg["optimizer"] == "adam":
            self.optimizer = Adam(self.model.parameters(), lr=cfg["lr"],
                                  weight_decay=cfg["weight_decay"])
        else:
            self.optimizer = SGD(self.model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                                 weight_decay=cfg["weight_decay"])
        self.scheduler = CosineAnnealingLR(self.optimizer, T_max=cfg["epochs"]) \
            if cfg["schedule"] == "cosine" else None

        # augmentation and normalisation run on each whole batch (data/batch_augment.py)
        steps = augmentation_batch("default" if cfg["augment"] else "none")
        sampler = balanced_sampler(train.labels) if cfg["balance"] == "sampler" else None
        self.loader = DataLoader(train.with_transform(None), batch_size=cfg["batch_size"],
                                 shuffle=sampler is None, seed=cfg["seed"], sampler=sampler,
                                 device=cfg["device"],
                                 batch_transform=BatchCompose(
                                     steps + [BatchNormalize(self.mean, self.std)]))
        self.loss_weight = None
        if cfg["balance"] == "weights" and self.multilabel:
            self.loss_weight = Tensor(pos_weights(train.labels), device=cfg["device"])
        elif cfg["balance"] == "weights":
            w = class_weights(train.labels, len(self.classes))
            self.loss_weight = Tensor(w, device=cfg["device"])
        self.history = []
        self.best = {"score": -np.inf, "epoch": None, "threshold": 0.5,
                     "thresholds": [0.5] * len(self.classes) if self.multilabel else None}
        self.start_epoch, self.start_batch, self.partial = 0, 0, None

    def _threshold(self, given):
        """What evaluate() takes as `threshold` on val: None (Youden's J on val), a probability,
        or for multi-label data K of them (--threshold's default: 0.5 for one label, "val"
        per finding)."""
        if given is None:
            given = "val" if self.multilabel else 0.5
        if not self.multilabel and len(self.classes) != 2 and self.cfg["threshold"] is not None:
            raise UserError(f"--threshold {given}: a threshold decides between two classes (or "
                            f"for each finding of multi-label data); this data has "
                            f"{len(self.classes)} classes ({', '.join(self.classes)}), each "
                            "image goes to its most probable one")
        if given == "val":
            return None
        return [float(given)] * len(self.classes) if self.multilabel else float(given)

    # checkpoints ---------------------------------------------------------------------------
    def _save(self, path, epoch, batch, threshold=0.5, partial=None, thresholds=None):
        if self.multilabel and thresholds is None:
            thresholds = [0.5] * len(self.classes)
        save_checkpoint(path, self.model, norm_mean=self.mean, norm_std=self.std,
                        classes=self.classes, positive_class=self.positive, threshold=threshold,
                        multilabel=self.multilabel, thresholds=thresholds,
                        min_input_size=self.min_input_size, optimizer=self.optimizer,
                        scheduler=self.scheduler, epoch=epoch, batch=batch,
                        train_config=self.cfg, history=self.history,
                        progress={"best": self.best, "partial": partial},
                        data_info=self.splits.info)

    def resume(self):
        """Load last.npz from the output folder and continue where it stopped."""
        ck = load_checkpoint(self.last_path)
        ck.check_matches(self.model.name, self.model.config())
        saved, now = ck.data_info, self.splits.info
        for key in ("split_sizes", "class_counts"):
            if saved.get(key) != now.get(key):
                raise CheckpointError(f"{self.last_path}: was trained on other data ({key}: saved "
                                      f"{saved.get(key)}, now {now.get(key)}); resume needs the "
                                      "same data")
        self.model.load_state_dict(ck.weights)
        if ck.optimizer_name is None:
            raise CheckpointError(f"{self.last_path}: holds no optimiser state (it was saved "
                                  "for using the network, not for going on training it), so "
                                  "training cannot resume from it; start a new run with "
                                  "--overwrite, or in another --out folder")
        if ck.optimizer_name != type(self.optimizer).__name__:
            raise CheckpointError(f"{self.last_path}: was trained with {ck.optimizer_name}, "
                                  f"not {type(self.optimizer).__name__}")
        self.optimizer.load_state_dict(ck.optimizer_state)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(ck.scheduler_state)
        engine_random.set_state(ck.rng_engine)
        self.history = ck.history
        self.best = ck.progress.get("best", self.best)
        if self.best.get("score") is None:
            self.best["score"] = -np.inf
        self.partial = ck.progress.get("partial")
        self.start_epoch, self.start_batch = ck.epoch, ck.batch
        self.mean, self.std = ck.norm_mean, ck.norm_std
        where = f"epoch {ck.epoch + 1}, batch {ck.batch + 1}" if ck.batch else f"epoch {ck.epoch + 1}"
        if ck.epoch >= self.cfg["epochs"]:
            self.log(f"{self.last_path}: already trained {ck.epoch} epochs (of "
                     f"{self.cfg['epochs']}); scoring the best network again")
        else:
            self.log(f"resuming from {self.last_path} at {where}")

    # one epoch -----------------------------------------------------------------------------
    def train_epoch(self, epoch, stop, on_batch_end=None):
        from tqdm import tqdm
        model, opt, cfg = self.model, self.optimizer, self.cfg
        model.train()
        start = self.start_batch if epoch == self.start_epoch else 0
        acc = dict(self.partial) if (start and self.partial) else \
            {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        bar = tqdm(total=len(self.loader), initial=start, desc=f"epoch {epoch + 1}/{cfg['epochs']}",
                   unit="batch", disable=not self.progress, leave=True, dynamic_ncols=True)
        t0 = time.perf_counter() - acc["seconds"]
        # `done`: batches finished (model, optimiser and counters all updated);
        # `clean`: False while a step is half-way (an interrupt there cannot be saved)
        done, clean = start, True
        try:
            for b, (x, y) in enumerate(self.loader.batches(epoch, start), start=start):
                clean = False
                logits, value = train_step(model, self.loss, opt, x, y)
                if not np.isfinite(value):
                    raise NonFiniteLoss(self._nan_message(epoch, b, value, x))
                n = y.shape[0]
                acc["loss_sum"] += value * n
                acc["correct"] += self._correct(logits, y)
                acc["seen"] += n
                acc["seconds"] = time.perf_counter() - t0
                done, clean = b + 1, True
                bar.update(1)
                bar.set_postfix(loss=f"{acc['loss_sum'] / acc['seen']:.4f}",
                                acc=f"{acc['correct'] / acc['seen']:.3f}",
                                img_s=f"{acc['seen'] / max(acc['seconds'], 1e-9):.0f}")
                if on_batch_end is not None:
                    on_batch_end(epoch, b, self)
                if stop.requested:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            bar.close()
            if clean and done > start:
                self._save(self.last_path, epoch, done, partial=acc)
                raise TrainingInterrupted(self.last_path, epoch, done, stop.signum) from None
            if os.path.exists(self.last_path):  # the checkpoint of the epoch's start stands
                ck = load_checkpoint(self.last_path)
                raise TrainingInterrupted(self.last_path, ck.epoch, ck.batch, stop.signum) \
                    from None
            raise
        bar.close()
        self.partial = None
        return {"train_loss": acc["loss_sum"] / max(acc["seen"], 1),
                "train_acc": acc["correct"] / max(acc["seen"], 1), "seconds": acc["seconds"],
                "images_per_s": acc["seen"] / max(acc["seconds"], 1e-9)}

    def loss(self, logits, y):
        if self.multilabel:
            return multilabel_loss(logits, y, self.loss_weight, self.cfg["label_smoothing"])
        return classification_loss(logits, y, self.loss_weight, self.cfg["label_smoothing"])

    def _correct(self, logits, y):
        """Images right by arg-max; multi-label: the share of findings right at p >= 0.5."""
        z, t = logits.numpy(), y.numpy()
        if self.multilabel:
            return float(((z >= 0) == (t > 0.5)).mean(axis=1).sum())
        return int((z.argmax(axis=1) == t).sum())

    def _nan_message(self, epoch, batch, value, x):
        kept = (f"The last good checkpoint is {self.last_path} (after epoch "
                f"{len(self.history)})") if os.path.exists(self.last_path) else \
            "No checkpoint was written yet"
        lr = self.optimizer.param_groups[0]["lr"]
        if not np.isfinite(x.numpy()).all():  # the data, not the step size
            cause = ("The batch's input holds NaN or infinite values: the data (or its "
                     "normalisation) is at fault, not the learning rate.")
        elif not all(np.isfinite(p.numpy()).all() for p in self.model.parameters()):
            cause = (f"The weights became NaN or infinite; the learning rate ({lr:g}) is "
                     "probably too high: try a smaller --lr.")
        else:
            cause = (f"The learning rate ({lr:g}) is probably too high: try a smaller --lr.")
        return (f"training stopped: the loss became {value} at epoch {epoch + 1}, batch "
                f"{batch + 1}, so the weights would be ruined. {kept}; nothing was saved over "
                f"it. {cause}")

    # the whole run ---------------------------------------------------------------------------
    def fit(self, on_batch_end=None):
        cfg, splits = self.cfg, self.splits
        with _StopRequest(self.log) as stop:
            for epoch in range(self.start_epoch, cfg["epochs"]):
                lr = self.optimizer.param_groups[0]["lr"]
                record = {"epoch": epoch + 1, "lr": lr}
                record.update(self.train_epoch(epoch, stop, on_batch_end))
                t = time.perf_counter()
                val, probs = evaluate(self.model, splits.val, self.mean, self.std, self.positive,
                                      device=cfg["device"], tta=cfg["tta"],
                                      threshold=self.threshold)
                record.update({"val_loss": val["loss"], "val_auc": val["auc"],
                               "val_acc": val["accuracy"] if self.multilabel else
                               _accuracy_at_argmax(probs, splits.val.labels)})
                record["seconds"] += time.perf_counter() - t
                self.history.append(record)
                if self.scheduler is not None:
                    self.scheduler.step()
                key = val["auc"] if np.isfinite(val["auc"]) else -val["loss"]
                improved = key > self.best["score"]
                if improved:
                    self.best = {"score": float(key), "epoch": epoch + 1,
                                 "threshold": float(val.get("threshold", 0.5)),
                                 "thresholds": _thresholds(val, self.classes)}
                    self._save(self.best_path, epoch + 1, 0, threshold=self.best["threshold"],
                               thresholds=self.best["thresholds"])
                if epoch + 1 > cfg["epochs"] - cfg["average_last"]:
                    self._add_to_average(epoch + 1)
                self._save(self.last_path, epoch + 1, 0)
                self.log(_epoch_line(record, improved, self.out))
                if stop.requested and epoch + 1 < cfg["epochs"]:
                    raise TrainingInterrupted(self.last_path, epoch + 1, 0, stop.signum)
        trained = self.start_epoch < cfg["epochs"]  # (a resume of a finished run trains none)
        if cfg["average_last"] and (trained or self.best.get("averaged") is None):
            self._keep_average()
        return self.finish()

    # the average of the last epochs' weights ---------------------------------------------------
    def _window(self):
        """(first, last) epoch whose weights the kept network averages."""
        return self.cfg["epochs"] - self.cfg["average_last"] + 1, self.cfg["epochs"]

    def _add_to_average(self, epoch):
        """Add the weights after `epoch` to the running sum, kept in memory and written to
        average.npz (atomically, so an interrupted run resumes with the epochs it had
        added). A sum that does not end at the epoch before, or starts before the window
        (a resume with more --epochs moves the window), is started afresh."""
        if self._average is None:                   # first use in this process: a resume's
            self._average = self._read_average()
        total = self._average
        if total.get("last_epoch", 0) >= epoch:      # already added before a resume
            return
        if total and (total["last_epoch"] != epoch - 1 or total["first_epoch"] < self._window()[0]):
            total = {}
        state = self.model.state_dict()
        summed = {k: (total[k] if k in total else 0) + v.astype(np.float64)
                  for k, v in state.items() if np.issubdtype(v.dtype, np.floating)}
        summed["count"] = total.get("count", 0) + 1
        summed["first_epoch"] = total.get("first_epoch", epoch)
        summed["last_epoch"] = epoch
        write_npz_atomic(self.average_path, {k: np.asarray(v) for k, v in summed.items()})
        self._average = summed

    def _read_average(self):
        if not os.path.exists(self.average_path):
            return {}
        with np.load(self.average_path, allow_pickle=False) as f:
            return {k: (f[k] if f[k].ndim else f[k].item()) for k in f.files}

    def _keep_average(self):
        """best.npz <- the mean of the weights after each of the last average_last epochs,
        with batch norm's running statistics measured again on the training images (the
        averaged weights make features whose mean and variance no epoch's statistics
        describe); its threshold chosen on validation like any epoch's."""
        total = self._average if self._average is not None else self._read_average()
        n, first, last = int(total["count"]), int(total["first_epoch"]), int(total["last_epoch"])
        state = self.model.state_dict()
        for k, v in state.items():
            if k in total:
                state[k] = (total[k] / n).astype(v.dtype)
        self.model.load_state_dict(state)
        self._measure_batch_norm()
        val, _ = evaluate(self.model, self.splits.val, self.mean, self.std, self.positive,
                          device=self.cfg["device"], tta=self.cfg["tta"],
                          threshold=self.threshold)
        self.best = {"score": float(val["auc"]), "epoch": last, "averaged": [first, last],
                     "threshold": float(val.get("threshold", 0.5)),
                     "thresholds": _thresholds(val, self.classes)}
        self._save(self.best_path, last, 0, threshold=self.best["threshold"],
                   thresholds=self.best["thresholds"])
        self.log(f"weights averaged over epochs {first}-{last} ({n}): val AUC {val['auc']:.4f}, "
                 f"saved {self.best_path}")

    def _measure_batch_norm(self):
        """Running mean and variance of every batch norm layer, as the plain average over
        one pass of the (normalised, not augmented) training images in training mode."""
        layers = [m for m in self.model.modules() if getattr(m, "running_mean", None) is not None]
        if not layers:
            return
        momenta = [m.momentum for m in layers]
        for m in layers:
            m.running_mean[...], m.running_var[...] = 0, 1
            m.num_batches_tracked[...] = 0
            m.momentum = None
        self.model.train()
        images, bs = self.splits.train.images, self.cfg["batch_size"]
        with no_grad():
            for i in range(0, images.shape[0], bs):
                x = normalise(np.asarray(images[i:i + bs]), self.mean, self.std)
                self.model(Tensor(x, device=self.cfg["device"]))
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        self.model.eval()

    def finish(self):
        """Best network -> threshold on val -> one score on test -> metrics.json."""
        ck = load_checkpoint(self.best_path)
        model = ck.build_model(self.cfg["device"])
        val, val_probs = evaluate(model, self.splits.val, ck.norm_mean, ck.norm_std,
                                  self.positive, device=self.cfg["device"], tta=self.cfg["tta"],
                                  threshold=self.threshold)
        if self.multilabel:
            threshold = _thresholds(val, self.classes)
            if list(ck.thresholds) != threshold:  # only if the device computes them differently
                arrays = dict(ck.arrays, thresholds=np.array(threshold, np.float64))
                write_npz_atomic(self.best_path, arrays)
        else:
            threshold = val.get("threshold", 0.5)
            if threshold != ck.threshold:  # only if the device computes it differently
                arrays = dict(ck.arrays, threshold=np.array(float(threshold)))
                write_npz_atomic(self.best_path, arrays)
        test, test_probs = evaluate(model, self.splits.test, ck.norm_mean, ck.norm_std,
                                    self.positive, threshold=threshold, device=self.cfg["device"],
                                    tta=self.cfg["tta"])
        finding = self.splits.info.get("finding")
        if finding is not None:  # one finding of multi-label data: its row, as in the table
            for m in (val, test):
                m["per_label"] = {finding: {k: m[k] for k in ("auc", "sensitivity",
                                                               "specificity", "threshold")}}
                m["per_label"][finding]["n_positive"] = int(m["tp"] + m["fn"])
                m["mean_auc"] = m["auc"]
        if os.path.exists(os.path.join(self.out, "splits.csv")):
            self.splits.info["splits_csv"] = os.path.join(self.out, "splits.csv")
        result = {
            "test": _public(test), "val": _public(val), "epochs": self.history,
            "best_epoch": ck.epoch, "averaged_epochs": self.best.get("averaged"),
            # "val": Youden's J on validation; "fixed": --threshold (0.5 by default, one label)
            "threshold_rule": "val" if self.threshold is None else "fixed",
            "checkpoint": self.best_path,
            "data": self.splits.info, "config": self.cfg,
            "model": {"name": ck.model_name, "config": ck.model_config,
                      "parameters": int(model.num_parameters())},
        }
        write_json_atomic(os.path.join(self.out, "metrics.json"), result)
        return FitResult(result, model, self.splits, val_probs, test_probs, self.positive,
                         ck.norm_mean, ck.norm_std)


def _accuracy_at_argmax(probs, labels):
    return float((probs.argmax(axis=1) == labels).mean()) if labels.size else float("nan")


def pos_weights(labels):
    """(K,) float32 pos_weight of multi-label training targets (N, K): negatives / positives
    of each finding, so a rare finding's few positives weigh as much as its negatives."""
    y = np.asarray(labels, dtype=np.float64)
    positives = y.sum(axis=0)
    negatives = y.shape[0] - positives
    return (negatives / np.maximum(positives, 1.0)).astype(np.float32)


def _thresholds(val, classes):
    """The per-finding thresholds of multi-label validation metrics (None otherwise)."""
    if "per_label" not in val:
        return None
    return [float(val["per_label"][c]["threshold"]) for c in classes]


def _public(m):
    keys = ("accuracy", "auc", "sensitivity", "specificity", "precision", "f1", "threshold",
            "loss", "tp", "fp", "tn", "fn", "n", "mean_auc", "per_label")
    return {k: m[k] for k in keys if k in m}


def _epoch_line(r, improved, out):
    best = "  * best so far (val AUC), saved best.npz" if improved else ""
    return (f"epoch {r['epoch']}: train loss {r['train_loss']:.4f} acc {r['train_acc']:.3f} | "
            f"val loss {r['val_loss']:.4f} AUC {r['val_auc']:.4f} acc {r['val_acc']:.3f} | "
            f"lr {r['lr']:.2g} | {r['seconds']:.1f}s{best}")


def write_json_atomic(path, obj):
    """json.dump, written atomically (minicnn/atomic.py): a reader never sees half a file."""
    text = json.dumps(M.json_safe(obj), indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


class FitResult:
    """What fit() returns: metrics (as in metrics.json) and what the figures need."""

    def __init__(self, metrics, model, splits, val_probs, test_probs, positive, mean, std):
        self.metrics, self.model, self.splits = metrics, model, splits
        self.val_probs, self.test_probs, self.positive = val_probs, test_probs, positive
        self.mean, self.std = mean, std


def _remove_old_outputs(out):
    """metrics.json, best.npz, last.npz and figures/*.png of an earlier run in `out`."""
    figures = os.path.join(out, "figures")
    old = [os.path.join(out, name) for name in RUN_OUTPUTS]
    if os.path.isdir(figures):
        old += [os.path.join(figures, n) for n in os.listdir(figures) if n.endswith(".png")]
    for path in old:
        if os.path.isfile(path):
            os.remove(path)


def fit(config=None, log=print, progress=True, resume=False, on_batch_end=None, **settings):
    """Train as described in the module docstring; returns a FitResult.

    settings: the keys of minicnn.xray.settings.SETTINGS (each with its default, its flag
    and its meaning there), e.g. data, model, epochs, lr, seed, out.
    on_batch_end(epoch, batch, run): called after every training step with the Run (its
    .model, .optimizer, ...), for tests and tools.
    """
    cfg = resolve_config(**dict(config or {}, **settings))
    with RunLock(cfg["out"], "--out"):  # one run per folder; sweeps a killed run's .tmp files
        run = Run(cfg, log=log, progress=progress)
        if resume:
            run.resume()
        else:  # a fresh run: no output of an older one may stay beside the new ones
            _remove_old_outputs(cfg["out"])
        return run.fit(on_batch_end=on_batch_end)
