"""Every setting of a training run, each spelled once: its default, its flag, its help text and
its check. `minicnn train`'s options (add_arguments), the trainer's DEFAULTS and the checks of
resolve_config (check) are all read from SETTINGS below, so a default or a bound changes in
one place.

A setting with flag None has no command-line option (fit() takes it; the saved
train_config records it). A default of None means "decided from other settings": epochs
(6 on synthetic data, 40 otherwise), lr (by optimizer), image_size (by the data),
average_last (5, or every epoch when there are fewer), threshold (0.5 for one-label data,
"val" for each finding of multi-label data).
"""
import argparse
import os
from collections import namedtuple

import numpy as np

from minicnn import validate
from minicnn.errors import UserError
from minicnn.nn.models import MODELS

# key: fit()'s name; flag: the option (None: none); default; help: the option's text, where
# "{default}" becomes the default; check(flag, value, cfg) raises UserError; options: more
# add_argument keywords (type, choices, metavar, action)
Setting = namedtuple("Setting", "key flag default help check options")

DEFAULT_LR = {"adam": 1e-3, "sgd": 0.01}
DEFAULT_EPOCHS = {"synthetic": 6, "other": 40}
DEFAULT_AVERAGE_LAST = 5        # the epochs averaged, or every epoch when there are fewer
OPTIMIZERS, DEVICES, BALANCES, TTAS = ("adam", "sgd"), ("cpu", "cuda", "cuda-sim"), \
    ("none", "weights", "sampler"), ("none", "flip")


def _int(lo, hi, hint=""):
    return lambda flag, v, cfg: validate.integer(flag, v, lo, hi, hint=hint)


def _num(**bounds):
    return lambda flag, v, cfg: validate.number(flag, v, **bounds)


def _one_of(options):
    return lambda flag, v, cfg: validate.choice(flag, v, tuple(options))


def _optional(check):
    return lambda flag, v, cfg: None if v is None else check(flag, v, cfg)


def _data(flag, v, cfg):
    if not isinstance(v, (str, os.PathLike)) or not os.fspath(v):
        raise UserError(f"{flag} must be a folder, a .npz file or 'synthetic', got {v!r}")


def _out(flag, v, cfg):
    if not isinstance(v, (str, os.PathLike)) or not os.fspath(v):
        raise UserError(f"{flag} must be a folder name, got {v!r}")


def _flag_bool(flag, v, cfg):
    if not isinstance(v, (bool, np.bool_)):
        raise UserError(f"{flag} must be True or False, got {v!r}")


def _labels(flag, v, cfg):
    if v is None:
        return
    if not (isinstance(v, str) and v.strip() or isinstance(v, (list, tuple)) and v and
            all(isinstance(n, str) for n in v)):
        raise UserError(f"{flag} must name findings, e.g. {flag} Pneumonia,Effusion; got {v!r}")
    if cfg["data"] == "synthetic":
        raise UserError(f"{flag} {v}: the synthetic set has one label per image; {flag} "
                        "picks findings of multi-label data (a ChestX-ray14 folder, ChestMNIST)")


def _threshold_rule(v):
    return ("'val' (chosen on the validation split by Youden's J) or a probability strictly "
            f"between 0 and 1, e.g. 0.5; got {v!r}")


def threshold(text):
    """--threshold's parser: "val", or the number the text spells (its range: _threshold)."""
    if text == "val":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {_threshold_rule(text)}") from None


def _threshold(flag, v, cfg):
    if v is None or v == "val":
        return
    if isinstance(v, str) or not (validate.is_number(v) and 0 < float(v) < 1):
        raise UserError(f"{flag} must be {_threshold_rule(v)}")


def _average_last(flag, v, cfg):
    validate.integer(flag, v, 0, cfg["epochs"],
                     hint=f" (0: off; at most --epochs, {cfg['epochs']})")


SETTINGS = (
    Setting("data", "--data", "synthetic",
            "a folder with train/, val/, test/ (one sub-folder per class), NIH ChestX-ray14's "
            "published folder (Data_Entry_2017*.csv, images/), a MedMNIST .npz file "
            "(ChestMNIST's multi-label too), or 'synthetic' (default: {default}, generated "
            "here, no download)", _data, {}),
    Setting("labels", "--labels", None,
            "multi-label data: the findings to learn (default: all 14); one finding, e.g. "
            "Pneumonia, is a binary task", _labels, {"metavar": "FINDING[,FINDING...]"}),
    Setting("val_fraction", "--val-fraction", 0.1,
            "share of the training images that becomes the validation split where the data "
            "has none (ChestX-ray14: by patient; class folders without val/: per class) "
            "(default: {default})",
            _num(lo=0, hi=1, lo_open=True, hi_open=True,
                 what="a share of the images between 0 and 1 (e.g. 0.1)"),
            {"type": float, "metavar": "F"}),
    Setting("model", "--model", "chestxray_bn",
            "network: chestxray_bn (three conv-batchnorm-ReLU-pool stages), chestxray (the "
            "same without batch norm) or alexnet (default: {default})",
            _one_of(MODELS), {"choices": list(MODELS)}),
    Setting("epochs", "--epochs", None,
            f"passes over the training set (default: {DEFAULT_EPOCHS['synthetic']} on "
            f"synthetic, {DEFAULT_EPOCHS['other']} otherwise)", _int(1, 100000), {"type": int}),
    Setting("batch_size", "--batch-size", 64, "images per step (default: {default})",
            _int(1, 65536), {"type": int}),
    Setting("image_size", "--image-size", None,
            "input size in pixels (default: the file's own size for .npz, 28 for synthetic, "
            "64 for folders, 227 for alexnet)",
            _optional(_int(8, validate.MAX_IMAGE_SIZE,
                           " (pixels per side; 8 is the smallest the networks take)")),
            {"type": int}),
    Setting("optimizer", "--optimizer", "adam", "default: {default}", _one_of(OPTIMIZERS),
            {"choices": list(OPTIMIZERS)}),
    Setting("lr", "--lr", None,
            f"learning rate (default: {DEFAULT_LR['adam']:g} for adam, {DEFAULT_LR['sgd']:g} "
            "for sgd); it follows a cosine schedule down to 0 over the epochs",
            _num(lo=0, lo_open=True, what="a positive number"), {"type": float}),
    Setting("momentum", None, 0.9, "", _num(lo=0, hi=1, hi_open=True), {}),
    Setting("weight_decay", "--weight-decay", 0.0,
            "L2 weight decay (default: {default})",
            _num(lo=0, what="a number >= 0 (0: none)"), {"type": float}),
    Setting("schedule", None, "cosine", "", _one_of(("cosine", "none")), {}),
    Setting("label_smoothing", "--label-smoothing", 0.0,
            "aim for 1 - EPS on the true class and EPS/K on every class instead of a hard 0/1 "
            "target (default: {default})",
            _num(lo=0, hi=1, hi_open=True, what="in [0, 1)"), {"type": float, "metavar": "EPS"}),
    Setting("dropout", None, 0.0, "", _num(lo=0, hi=1, hi_open=True), {}),
    Setting("device", "--device", "cpu", "default: {default}", _one_of(DEVICES),
            {"choices": list(DEVICES)}),
    Setting("balance", "--balance", "weights",
            "class imbalance: weighted loss (multi-label: a pos_weight per finding, negatives "
            "/ positives), balanced batches, or none (default: {default})", _one_of(BALANCES),
            {"choices": list(BALANCES)}),
    Setting("augment", "--no-augment", True,
            "train without random flips, rotations, shifts and zooms", _flag_bool,
            {"action": "store_false"}),
    Setting("average_last", "--average-last", None,
            "the network kept is the average of the weights after each of the last K epochs "
            "(batch norm statistics then measured again on train); 0 keeps the epoch with the "
            f"best validation ROC-AUC instead (default: {DEFAULT_AVERAGE_LAST}, or every epoch "
            "when there are fewer)", _average_last, {"type": int, "metavar": "K"}),
    Setting("tta", "--tta", "flip",
            "test-time augmentation: flip scores each image and its mirror image and averages "
            "the two probabilities (validation and test alike); none scores it once "
            "(default: {default})", _one_of(TTAS), {"choices": list(TTAS)}),
    Setting("threshold", "--threshold", None,
            "an image is called positive when its probability of the positive class (each "
            "finding's, multi-label) is at least T; 'val' chooses T on the validation split, "
            "where sensitivity + specificity is highest (Youden's J) (default: 0.5, the "
            "arg-max, for one-label data; 'val', per finding, for multi-label data)",
            _threshold, {"type": threshold, "metavar": "T"}),
    Setting("seed", "--seed", 0, "seed of every random choice (default: {default})",
            _int(0, validate.MAX_SEED), {"type": int}),
    Setting("synthetic_sizes", None, None, "",
            lambda flag, v, cfg: validate.synthetic_sizes(flag, v), {}),
    Setting("out", "--out", "runs/latest", "output folder (default: runs/<name of the data>)",
            _out, {}),
)

DEFAULTS = {s.key: s.default for s in SETTINGS}
_BY_KEY = {s.key: s for s in SETTINGS}


def flag(key):
    """The option of a setting as the user types it ('--batch-size'), or its key."""
    return _BY_KEY[key].flag or key


def add_arguments(parser):
    """One option per setting with a flag; every default None, so that what the user gave
    can be told from what resolve_config fills in (--out: `minicnn train` names the folder
    after the data)."""
    for s in SETTINGS:
        if s.flag is None:
            continue
        text = s.help.replace("{default}", str(s.default))
        parser.add_argument(s.flag, dest=s.key, default=None, help=text, **s.options)


def given(args):
    """{key: value} of the settings the parsed command line set (None where not given);
    --out apart, since resuming compares these with the saved run's and --out names it."""
    return {s.key: getattr(args, s.key, None) for s in SETTINGS
            if s.flag is not None and s.key != "out"}


def check(cfg):
    """Every setting of a resolved config, by its flag, in the order of SETTINGS."""
    for s in SETTINGS:
        s.check(flag(s.key), cfg[s.key], cfg)
