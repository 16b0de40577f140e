"""The fuzz suite: bad input and faults, as a hostile user would try them.

Generated bad folders, .npz files, checkpoints, command-line values and API calls, and
the faults (Ctrl-C, SIGTERM, SIGKILL in the middle of a write, a full disk, a read-only
disk, two trainers in one folder). Every case asserts the exit code (2 for bad input),
that the message names the problem, that no traceback is printed, and that what was
on disk before is still there, whole.

Input is checked before any device is touched, so these cases run on the cpu alone.
"""
import contextlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from minicnn import validate
from minicnn.cli import main
from minicnn.xray.checkpoint import load_checkpoint, write_npz_atomic
from minicnn.data import datasets
from minicnn.data.datasets import open_splits
from minicnn.data.images import read_image
from minicnn.errors import UserError
from minicnn.npzfile import npz_headers
from minicnn.xray.train import fit, resolve_config

from cli_run import TINY, TINY_CLI

pytestmark = pytest.mark.fuzz

QUICK = ["--epochs", "1", "--batch-size", "8", "--quiet", "--no-figures"]


def cli(*argv):
    """(exit code, stdout, stderr) of `minicnn argv...` in this process; argparse's own
    refusals (SystemExit) included."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as stop:
            code = stop.code
    return code, out.getvalue(), err.getvalue()


def refused(argv, *names, max_lines=6):
    """Run the CLI; assert exit code 2, no traceback, and every name in the message."""
    code, stdout, stderr = cli(*argv)
    assert code == 2, f"exit code {code} for {argv}\nstdout: {stdout[-800:]}\nstderr: {stderr}"
    assert "Traceback" not in stderr + stdout
    for name in names:
        assert str(name) in stderr, f"{name!r} not in the message:\n{stderr}"
    assert len(stderr.strip().splitlines()) <= max_lines, f"not one clear message:\n{stderr}"
    return stderr


def snapshot(folder):
    """{relative path: bytes} of every file under folder (the lock file aside)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            if name != ".minicnn.lock":
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    out[os.path.relpath(path, folder)] = f.read()
    return out


@contextlib.contextmanager
def deadline(seconds):
    """Fail (not hang) if the block takes longer than `seconds`."""
    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: it hangs")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- data made to order ------------------------------------------------------------------------

def medmnist(path, **replace):
    """A small valid MedMNIST-style .npz (train 16, val 8, test 8 of 12x12 uint8), with
    some arrays replaced; returns the path."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 16), ("val", 8), ("test", 8)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 12, 12), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
    arrays.update(replace)
    np.savez(path, **arrays)
    return path


def labels_with(value, n=16, at=3, dtype=np.uint8):
    y = (np.arange(n) % 2).reshape(-1, 1).astype(dtype)
    y[at] = value
    return y


def xray_folder(root, classes=("NORMAL", "PNEUMONIA"), per_class=2, size=12):
    for split in ("train", "val", "test"):
        for k, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(np.full((size, size), 40 + 100 * k + 9 * i, np.uint8)).save(
                    d / f"{i}.png")
    return root


def png_header(width, height):
    """A PNG whose header declares width x height pixels (and holds none)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + \
        chunk(b"IEND", b"")


def train_npz(path, out):
    return ("train", "--data", path, "--out", out, "--image-size", "12", *QUICK)


# --- command-line values ------------------------------------------------------------------------

BAD_TRAIN_VALUES = [
    (["--seed", "-1"], "--seed", "-1"), (["--seed", str(2 ** 32)], "--seed", "4294967296"),
    (["--image-size", "-5"], "--image-size", "-5"), (["--image-size", "0"], "--image-size", "0"),
    (["--image-size", "100000"], "--image-size", "100000"),
    (["--image-size", "7"], "--image-size", "7"),
    (["--weight-decay", "-5"], "--weight-decay", "-5"),
    (["--weight-decay", "nan"], "--weight-decay", "nan"),
    (["--weight-decay", "inf"], "--weight-decay", "inf"),
    (["--lr", "0"], "--lr", "0"), (["--lr", "nan"], "--lr", "nan"), (["--lr", "inf"], "--lr", "inf"),
    (["--lr", "-0.1"], "--lr", "-0.1"),
    (["--epochs", "0"], "--epochs", "0"), (["--epochs", "-3"], "--epochs", "-3"),
    (["--epochs", "10000000"], "--epochs", "10000000"),
    (["--batch-size", "0"], "--batch-size", "0"), (["--batch-size", "-8"], "--batch-size", "-8"),
    (["--batch-size", "100000000"], "--batch-size", "100000000"),
    (["--label-smoothing", "1"], "--label-smoothing", "1"),
    (["--label-smoothing", "-0.1"], "--label-smoothing", "-0.1"),
    (["--label-smoothing", "nan"], "--label-smoothing", "nan"),
    (["--synthetic-size", "2"], "--synthetic-size", "2"),
    (["--synthetic-size", "-5"], "--synthetic-size", "-5"),
    (["--val-fraction", "0"], "--val-fraction", "0"), (["--val-fraction", "1"], "--val-fraction", "1"),
    (["--val-fraction", "nan"], "--val-fraction", "nan"),
    (["--val-fraction", "-0.1"], "--val-fraction", "-0.1"),
    (["--labels", "Pneumonia"], "--labels", "Pneumonia"),
]


@pytest.mark.parametrize("flags,flag,value", BAD_TRAIN_VALUES, ids=[" ".join(c[0]) for c in BAD_TRAIN_VALUES])
def test_bad_training_values_are_refused_before_anything_is_written(tmp_path, flags, flag, value):
    out = tmp_path / "out"
    refused(["train", "--out", out, *QUICK, *flags], flag, value)
    assert not out.exists(), "a refused run must not even create its folder"


def test_values_argparse_refuses_do_not_trace(tmp_path):
    for argv in (["train", "--epochs", "three"], ["train", "--lr", "fast"],
                 ["evaluate", "--checkpoint", "x", "--split", "all"],
                 ["predict", "--checkpoint", "x", "--device", "tpu", "a.png"]):
        code, _, err = cli(*argv)
        assert code == 2 and "Traceback" not in err and "invalid" in err, (argv, err)


def test_download_timeout_must_be_positive(tmp_path):
    refused(["download", "pneumoniamnist", "--dir", tmp_path, "--timeout", "-1"], "--timeout", "-1")
    refused(["download", "pneumoniamnist", "--dir", tmp_path, "--timeout", "nan"], "--timeout", "nan")


def test_api_settings_are_checked_by_name(tmp_path):
    for bad, name in [(dict(seed=-1), "--seed"), (dict(epochs=2.5), "--epochs"),
                      (dict(batch_size="8"), "--batch-size"), (dict(image_size=True), "--image-size"),
                      (dict(weight_decay=float("nan")), "--weight-decay"),
                      (dict(dropout=1.0), "dropout"), (dict(momentum=-1), "momentum"),
                      (dict(augment="yes"), "augment"), (dict(device="gpu"), "--device"),
                      (dict(synthetic_sizes={"train": 2}), "--synthetic-size"),
                      (dict(synthetic_sizes=[1, 2]), "synthetic_sizes")]:
        with pytest.raises(UserError, match=name):
            resolve_config(**bad)
    with pytest.raises(UserError, match="--image-size"):
        open_splits("synthetic", image_size=0)
    with pytest.raises(UserError, match="--seed"):
        fit(out=str(tmp_path / "api"), seed=-1, **TINY)
    assert not (tmp_path / "api").exists()


# --- .npz data sets -------------------------------------------------------------------------------

def _npz_cases(tmp):
    """(name, path, words the message must hold)."""
    f = tmp
    y2 = labels_with(2, n=8)
    return [
        ("stray label 7", medmnist(f / "pneumoniamnist.npz", train_labels=labels_with(7)),
         ["train_labels", "7", "index 3", "pneumoniamnist has 2 classes"]),
        ("a 2 only in test", medmnist(f / "pneumoniamnist_64.npz", test_labels=y2),
         ["test_labels", "label 2", "pneumoniamnist has 2 classes"]),
        ("a label past the set's own classes", medmnist(f / "dermamnist_64.npz", val_labels=labels_with(7, 8)),
         ["val_labels", "label 7", "dermamnist has 7 classes", "0 to 6"]),
        ("a class only in test", medmnist(f / "mine.npz", test_labels=y2),
         ["test_labels holds the label 2", "training labels run from 0 to 1", "2 classes"]),
        ("a huge label", medmnist(f / "huge.npz", train_labels=labels_with(10 ** 9, dtype=np.int64)),
         ["train_labels run from 0 to 1000000000", "no training image has label 2"]),
        ("a folder called .npz", _folder(f / "dir.npz"), ["is a folder"]),
        ("a gap in the labels", medmnist(f / "gap.npz", train_labels=(np.arange(16) % 2 * 2).reshape(-1, 1)),
         ["train_labels run from 0 to 2", "no training image has label 1"]),
        ("float labels", medmnist(f / "fl.npz", train_labels=labels_with(0.5, dtype=np.float32)),
         ["train_labels", "0.5", "whole numbers"]),
        ("NaN label", medmnist(f / "nanl.npz", val_labels=labels_with(np.nan, 8, dtype=np.float64)),
         ["val_labels", "nan", "whole numbers"]),
        ("negative label", medmnist(f / "neg.npz", train_labels=labels_with(-1, dtype=np.int64)),
         ["train_labels", "-1", "negative"]),
        ("string labels", medmnist(f / "str.npz", train_labels=np.array([["a"]] * 16)),
         ["train_labels", "<U1", "whole numbers"]),
        ("one class in training", medmnist(f / "one.npz", train_labels=np.zeros((16, 1), np.uint8)),
         ["training split holds only class 0", "at least two classes"]),
        ("empty val", medmnist(f / "ev.npz", val_images=np.zeros((0, 12, 12), np.uint8),
                               val_labels=np.zeros((0, 1), np.uint8)), ["val split is empty"]),
        ("empty train", medmnist(f / "et.npz", train_images=np.zeros((0, 12, 12), np.uint8),
                                 train_labels=np.zeros((0, 1), np.uint8)), ["train split is empty"]),
        ("float 0-255", medmnist(f / "f255.npz", train_images=np.full((16, 12, 12), 200.0)),
         ["train_images", "200", "[0, 1]", "uint8"]),
        ("int32 images", medmnist(f / "i32.npz", val_images=np.ones((8, 12, 12), np.int32)),
         ["val_images", "int32", "uint8", "uint16"]),
        ("bool images", medmnist(f / "b.npz", val_images=np.ones((8, 12, 12), bool)),
         ["val_images", "bool"]),
        ("NaN pixel", medmnist(f / "nanp.npz", train_images=np.where(
            np.arange(16 * 144).reshape(16, 12, 12) == 7, np.nan, 0.5)),
         ["train_images", "nan", "finite"]),
        ("labels and images disagree", medmnist(f / "n.npz", test_labels=np.zeros((5, 1), np.uint8)),
         ["test_images", "(8, 12, 12)", "(5, 1)"]),
        ("5-d images", medmnist(f / "5d.npz", train_images=np.zeros((16, 2, 12, 12, 1), np.uint8)),
         ["train_images", "(16, 2, 12, 12, 1)"]),
        ("multi-label in train only", medmnist(f / "ml.npz",
                                               train_labels=np.zeros((16, 14), np.uint8)),
         ["val_labels has shape (8, 1) but train_labels (16, 14)", "multi-label"]),
        ("multi-label target 2", medmnist(f / "ml2.npz", **{
            f"{s}_labels": np.full((n, 14), 2 if s == "test" else 1, np.uint8)
            for s, n in (("train", 16), ("val", 8), ("test", 8))}),
         ["test_labels holds 2 at image 0, column 0", "0 (absent) or 1 (present)"]),
        ("missing split", _without(medmnist(f / "ms.npz"), "val_images"),
         ["has no 'val_images'"]),
        ("object array", _with_objects(f / "obj.npz"), ["Python objects"]),
        ("raw member", _with_member(medmnist(f / "raw.npz"), "README.txt", b"hello"),
         ["'README.txt'", "not a .npy"]),
        ("size that lies", _lying_member(medmnist(f / "lie.npz")),
         ["'train_labels'", "declares", "damaged"]),
        ("truncated", _truncated(medmnist(f / "cut.npz")), ["damaged or truncated"]),
        ("empty file", _write(f / "zero.npz", b""), ["damaged or truncated"]),
        ("text", _write(f / "text.npz", b"not a zip file at all\n" * 10), ["damaged or truncated"]),
    ]


def _folder(path):
    path.mkdir()
    return path


def _write(path, data):
    path.write_bytes(data)
    return path


def _without(path, key):
    arrays = dict(np.load(path))
    del arrays[key]
    np.savez(path, **arrays)
    return path


def _with_objects(path):
    medmnist(path)
    arrays = dict(np.load(path))
    arrays["train_labels"] = np.array([[0], [1]] * 8, dtype=object)
    np.savez(path, **arrays)  # numpy pickles object arrays; minicnn must not unpickle them
    return path


def _with_member(path, name, data):
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(name, data)
    return path


def _lying_member(path):
    """train_labels.npy whose header claims 10**9 labels: the zip holds only 16."""
    import io
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "|u1", "fortran_order": False,
                                                "shape": (10 ** 9, 1)})
    members["train_labels.npy"] = head.getvalue() + bytes(16)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_bad_npz_data_sets_are_refused_by_name(tmp_path):
    cases = _npz_cases(tmp_path)
    for name, path, words in cases:
        out = tmp_path / f"out-{path.stem}"
        refused(train_npz(path, out), str(path), *words)
        assert not (out / "last.npz").exists(), name
    assert len(cases) >= 24


def test_a_named_pipe_called_data_npz_does_not_hang(tmp_path):
    os.mkfifo(tmp_path / "data.npz")
    with deadline(20):
        refused(train_npz(tmp_path / "data.npz", tmp_path / "o"), "data.npz", "not a regular file")


def test_a_zip_bomb_member_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    # 64 MB of zeros compresses to ~64 KB; with a 32 MB budget it must be refused from its header
    path = tmp_path / "pneumoniamnist.npz"
    big = {"train_images": np.zeros((16 * 1024, 64, 64), np.uint8),
           "train_labels": (np.arange(16 * 1024) % 2).reshape(-1, 1).astype(np.uint8)}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for key, value in dict(np.load(medmnist(tmp_path / "small.npz")), **big).items():
            z.writestr(key + ".npy", _npy(value))
    assert path.stat().st_size < 2 << 20
    monkeypatch.setenv("MINICNN_MAX_BYTES", str(32 << 20))

    def no_inflating(*a, **k):
        raise AssertionError("the member was inflated before its size was checked")
    monkeypatch.setattr("minicnn.npzfile.np.load", no_inflating)
    refused(train_npz(path, tmp_path / "o"), str(path), "would take", "MiB", "train_images")


def _npy(array):
    import io
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array)
    return buf.getvalue()


def test_valid_npz_variants_give_correct_data(tmp_path):
    # uint16 pixels are divided by 65535, float pixels in [0, 1] kept, whole float labels read
    x16 = np.random.default_rng(1).integers(0, 65536, (16, 12, 12), dtype=np.uint16)
    xf = np.random.default_rng(2).random((8, 12, 12)).astype(np.float32)
    path = medmnist(tmp_path / "pneumoniamnist.npz", train_images=x16, val_images=xf,
                    test_labels=(np.arange(8) % 2).reshape(-1, 1).astype(np.float64))
    splits = open_splits(path)
    np.testing.assert_array_equal(splits.train.images[:, 0], x16.astype(np.float32) / np.float32(65535))
    np.testing.assert_array_equal(splits.val.images[:, 0], xf)
    assert splits.test.labels.tolist() == (np.arange(8) % 2).tolist()
    assert splits.train.classes == ("NORMAL", "PNEUMONIA")


def test_medmnist_api_checks_the_same_way(tmp_path):
    path = medmnist(tmp_path / "pneumoniamnist.npz", val_labels=labels_with(5, 8))
    with pytest.raises(UserError, match="val_labels holds the label 5"):
        datasets.MedMNIST(path, "train")
    with pytest.raises(UserError, match="not a regular file"):
        os.mkfifo(tmp_path / "p.npz")
        with deadline(20):
            npz_headers(tmp_path / "p.npz", UserError, "dataset .npz")


# --- folders of images ----------------------------------------------------------------------------

def train_folder(root, out, *extra):
    return ("train", "--data", root, "--out", out, "--image-size", "8", *QUICK, *extra)


def test_a_folder_tree_with_one_class_is_refused(tmp_path):
    root = xray_folder(tmp_path / "xr", classes=("NORMAL",))
    refused(train_folder(root, tmp_path / "o"), str(root), "only class NORMAL", "at least two")


def test_a_named_pipe_in_a_class_folder_is_named_without_opening_it(tmp_path):
    root = xray_folder(tmp_path / "xr")
    os.mkfifo(root / "train" / "NORMAL" / "pipe.png")
    os.symlink("/dev/zero", root / "val" / "PNEUMONIA" / "zero.png")
    with deadline(30):
        refused(train_folder(root, tmp_path / "o"), "pipe.png: is a named pipe",
                "zero.png: is a device", max_lines=8)


@pytest.mark.parametrize("side", [30000, 12000])
def test_a_decompression_bomb_header_is_a_clear_error(tmp_path, side):
    root = xray_folder(tmp_path / "xr")
    (root / "test" / "NORMAL" / "bomb.png").write_bytes(png_header(side, side))
    refused(train_folder(root, tmp_path / "o"), "bomb.png", f"{side}x{side}", max_lines=8)


def test_other_bad_files_in_a_folder_are_named(tmp_path):
    root = xray_folder(tmp_path / "xr")
    (root / "train" / "NORMAL" / "empty.png").write_bytes(b"")
    os.symlink("loop.png", root / "val" / "NORMAL" / "loop.png")
    Image.fromarray(np.full((12, 12), np.nan, np.float32), mode="F").save(root / "val" / "NORMAL" / "nan.tiff")
    (root / "train" / "PNEUMONIA" / "text.jpeg").write_text("hello")
    (root / "test" / "PNEUMONIA").rename(root / "test" / "P")
    (root / "test" / "PNEUMONIA").write_text("a file where a class folder should be")
    refused(train_folder(root, tmp_path / "o"), "class folders differ", "missing from test: PNEUMONIA")
    (root / "test" / "PNEUMONIA").unlink()
    (root / "test" / "P").rename(root / "test" / "PNEUMONIA")
    refused(train_folder(root, tmp_path / "o"), "empty.png", "text.jpeg", "loop.png",
            "nan.tiff: the image holds NaN", max_lines=8)


def test_read_image_api_refuses_pipes_at_once(tmp_path):
    os.mkfifo(tmp_path / "x.png")
    with deadline(10), pytest.raises(UserError, match="x.png: is a named pipe"):
        read_image(tmp_path / "x.png")
    with pytest.raises(UserError, match="is a folder"):
        read_image(tmp_path)


# --- checkpoints ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzzrun")
    fit(out=str(out), epochs=1, **TINY)
    return out


def _mutations(arrays):
    """(name, new arrays, words the message must hold) for many wrong fields."""
    def change(**kv):
        a = dict(arrays)
        for k, v in kv.items():
            if v is None:
                a.pop(k)
            else:
                a[k] = v
        return a
    w = sorted(k for k in arrays if k.startswith("weights/"))[0]
    nan_w = arrays[w].copy()
    nan_w.flat[0] = np.nan
    cfg = json.loads(str(arrays["model_config"]))
    return [
        ("string weights", change(**{w: np.array(["a"] * 3)}), [w, "<U1"]),
        ("NaN weights", change(**{w: nan_w}), [w, "NaN"]),
        ("NaN threshold", change(threshold=np.array(np.nan)), ["threshold", "nan", "[0, 1]"]),
        ("threshold 1.5", change(threshold=np.array(1.5)), ["threshold", "1.5", "[0, 1]"]),
        ("text threshold", change(threshold=np.array("high")), ["threshold", "high"]),
        ("model config a list", change(model_config=np.array("[1, 2]")), ["model_config", "[1, 2]", "JSON object"]),
        ("model config 200000 px", change(model_config=np.array(json.dumps(dict(cfg, image_size=[200000, 200000])))),
         ["model_config", "200000", "1024"]),
        ("model config not JSON", change(model_config=np.array("{oops")), ["model_config", "not valid JSON"]),
        ("empty classes", change(classes=np.array([], dtype="<U1")), ["classes", "two or more"]),
        ("one class", change(classes=np.array(["NORMAL"])), ["classes", "two or more"]),
        ("duplicate classes", change(classes=np.array(["A", "A"])), ["classes", "distinct"]),
        ("positive class 5", change(positive_class=np.array(5)), ["positive_class", "5", "0 to 1"]),
        ("positive class -1", change(positive_class=np.array(-1)), ["positive_class", "-1"]),
        ("epoch text", change(epoch=np.array("ten")), ["epoch", "ten", "whole number"]),
        ("epoch float", change(epoch=np.array(1.5)), ["epoch", "1.5"]),
        ("image size 100000", change(image_size=np.array([100000, 100000])), ["image_size", "100000"]),
        ("image size shape", change(image_size=np.array([16, 16, 16])), ["image_size", "(height, width)"]),
        ("channels 2", change(channels=np.array(2)), ["channels", "2"]),
        ("norm std 0", change(norm_std=np.array([0.0], np.float32)), ["norm_std", "positive"]),
        ("norm mean NaN", change(norm_mean=np.array([np.nan], np.float32)), ["norm_mean", "NaN"]),
        ("norm mean shape", change(norm_mean=np.zeros(3, np.float32)), ["norm_mean", "(1,)"]),
        ("unknown model setting", change(model_config=np.array(json.dumps(dict(cfg, depth=50)))),
         ["depth"]),
        ("model dropout 5", change(model_config=np.array(json.dumps(dict(cfg, dropout=5)))),
         ["dropout"]),
        ("no format", change(format=None), ["not a minicnn checkpoint"]),
        ("format version 2", change(format_version=np.array(2)), ["format version 2"]),
        ("no model name", change(model_name=None), ["no 'model_name' entry"]),
        ("unknown model", change(model_name=np.array("resnet")), ["resnet"]),
        ("history not a list", change(history=np.array('{"a": 1}')), ["history", "JSON list"]),
        ("optimizer state NaN", change(**{"optimizer/state.0.exp_avg": np.full(
            arrays["optimizer/state.0.exp_avg"].shape, np.nan, np.float32)}), ["optimizer/state.0.exp_avg", "NaN"]),
    ]


def test_bad_checkpoint_fields_are_refused_by_name(run_dir, tmp_path):
    good = load_checkpoint(run_dir / "best.npz").arrays
    image = tmp_path / "x.png"
    Image.fromarray(np.full((20, 20), 99, np.uint8)).save(image)
    ev = tmp_path / "ev"
    assert cli("evaluate", "--checkpoint", run_dir / "best.npz", "--out", ev, "--no-figures")[0] == 0
    before = snapshot(ev)
    cases = _mutations(good)
    for name, arrays, words in cases:
        path = tmp_path / "bad.npz"
        write_npz_atomic(path, arrays)
        refused(["evaluate", "--checkpoint", path, "--out", ev, "--no-figures"], str(path), *words)
        code, stdout, stderr = cli("predict", "--checkpoint", path, image)
        assert code == 2 and "Traceback" not in stderr, (name, stderr)
        assert "nan" not in stdout.lower(), f"{name}: a prediction was printed: {stdout}"
    assert snapshot(ev) == before, "a refused evaluate changed the earlier results"
    assert len(cases) >= 25


def test_raw_members_and_bombs_in_a_checkpoint(run_dir, tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    path.write_bytes((run_dir / "best.npz").read_bytes())
    _with_member(path, "payload.pkl", b"cos\nsystem\n(S'echo hi'\ntR.")
    refused(["evaluate", "--checkpoint", path], "'payload.pkl'", "not a .npy")
    monkeypatch.setenv("MINICNN_MAX_BYTES", "100000")
    refused(["evaluate", "--checkpoint", run_dir / "best.npz"], "would take", "minicnn allows")


def test_random_bit_flips_of_a_checkpoint_never_trace(run_dir, tmp_path):
    data = bytearray((run_dir / "best.npz").read_bytes())
    rng = np.random.default_rng(14)
    image = tmp_path / "x.png"
    Image.fromarray(np.full((20, 20), 99, np.uint8)).save(image)
    for trial in range(40):
        bad = bytearray(data)
        for k in rng.integers(0, len(bad), int(rng.integers(1, 4))):
            bad[k] ^= 1 << int(rng.integers(0, 8))
        path = tmp_path / "flip.npz"
        path.write_bytes(bytes(bad))
        code, stdout, stderr = cli("predict", "--checkpoint", path, image, "--json")
        assert "Traceback" not in stderr and code in (0, 2), (trial, code, stderr)
        if code == 0:
            row = json.loads(stdout.splitlines()[0])
            assert 0.0 <= row["p_pneumonia"] <= 1.0


def test_resume_refusals_speak_in_flags(run_dir, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "last.npz").write_bytes((run_dir / "last.npz").read_bytes())
    refused(["train", "--resume", "--out", out, "--synthetic-size", "64"],
            "started with --synthetic-size 32", "so --synthetic-size 64 cannot apply")
    err = refused(["train", "--resume", "--out", out, "--synthetic-size", "64"])
    assert "{" not in err and "--synthetic-sizes" not in err
    arrays = {k: v for k, v in load_checkpoint(out / "last.npz").arrays.items()
              if not k.startswith("optimizer")}
    write_npz_atomic(out / "last.npz", arrays)
    err = refused(["train", "--resume", "--out", out], "holds no optimiser state")
    assert "None" not in err
    arrays = dict(load_checkpoint(run_dir / "last.npz").arrays)
    cfg = json.loads(str(arrays["train_config"]))
    for bad, words in [(dict(cfg, epochs=-1), ["train_config", "--epochs", "-1"]),
                       (dict(cfg, colour="blue"), ["train_config", "colour"])]:
        arrays["train_config"] = np.array(json.dumps(bad))
        write_npz_atomic(out / "last.npz", arrays)
        refused(["train", "--resume", "--out", out], str(out / "last.npz"), *words)


def test_nan_in_the_input_is_not_blamed_on_the_learning_rate(tmp_path):
    from minicnn.xray.train import NonFiniteLoss

    def poison(epoch, batch, run):  # the data goes bad under the trainer's feet
        run.splits.train.images[...] = np.nan
    with pytest.raises(NonFiniteLoss) as info:
        fit(out=str(tmp_path), epochs=1, on_batch_end=poison, **TINY)
    assert "input holds NaN" in str(info.value) and "not the learning rate" in str(info.value)
    assert "try a smaller --lr" not in str(info.value)


# --- output folders ----------------------------------------------------------------------------------

def test_out_that_is_a_file_or_lies_under_one(run_dir, tmp_path):
    afile = tmp_path / "a-file"
    afile.write_text("keep me")
    refused(["train", "--out", afile, *TINY_CLI, "--epochs", "1"], "--out", str(afile), "is a file")
    refused(["train", "--out", afile / "sub", *TINY_CLI, "--epochs", "1"], "--out", "cannot create")
    refused(["evaluate", "--checkpoint", run_dir / "best.npz", "--out", afile], "--out", "is a file")
    image = tmp_path / "x.png"
    Image.fromarray(np.full((20, 20), 99, np.uint8)).save(image)
    code, stdout, stderr = cli("predict", "--checkpoint", run_dir / "best.npz", image,
                               "--gradcam", afile / "cams")
    assert code == 2 and "Traceback" not in stderr
    assert "x.png" in stdout, "the image is scored even when its heat map cannot be written"
    assert "--gradcam" in stderr and "cannot create" in stderr
    assert afile.read_text() == "keep me"


@pytest.mark.parametrize("left", [["metrics.json"], ["best.npz"], ["last.npz"], ["metrics.json", "best.npz"]])
def test_the_overwrite_guard_sees_any_sign_of_a_run(run_dir, tmp_path, left):
    out = tmp_path / "o"
    out.mkdir()
    for name in left:
        (out / name).write_bytes((run_dir / name).read_bytes())
    before = snapshot(out)
    refused(["train", "--out", out, *TINY_CLI, "--epochs", "1"], "already holds a training run",
            left[0], "--overwrite")
    assert snapshot(out) == before


def test_overwrite_replaces_every_output_of_the_old_run(run_dir, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "metrics.json").write_text('{"old": true}')
    (out / "figures").mkdir()
    (out / "figures" / "roc.png").write_bytes(b"an old figure")
    (out / ".best.npz.abc123.tmp").write_bytes(b"half a file")
    code, _, stderr = cli("train", "--out", out, *TINY_CLI, "--epochs", "1", "--no-figures", "--overwrite")
    assert code == 0, stderr
    assert "old" not in json.loads((out / "metrics.json").read_text())
    assert not (out / "figures" / "roc.png").exists(), "no figure of the old run beside the new one"
    assert not list(out.glob("*.tmp")), "the killed write's temporary file is swept"


def _mount_tmpfs(path, size="4m", ro=False):
    path.mkdir()
    opts = f"size={size}" + (",ro" if ro else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"needs root and mount to make a small tmpfs ({done.stderr.strip()})")


@contextlib.contextmanager
def tmpfs(path, size="4m", ro=False):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    _mount_tmpfs(path, size, ro)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


HOLD_LOCK = r"""
import fcntl, os, sys, time
f = open(os.path.join(sys.argv[1], ".minicnn.lock"), "a+")
fcntl.flock(f.fileno(), fcntl.LOCK_EX)
f.truncate(0); f.write(f"{os.getpid()}\n"); f.flush()
print("HELD", flush=True)
time.sleep(60)
"""


def test_evaluate_and_predict_respect_a_held_folder(run_dir, tmp_path):
    held = tmp_path / "held"
    held.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(held)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "HELD"
        refused(["evaluate", "--checkpoint", run_dir / "best.npz", "--out", held, "--no-figures"],
                f"pid {holder.pid}", "--out")
        image = tmp_path / "x.png"
        Image.fromarray(np.full((20, 20), 99, np.uint8)).save(image)
        code, stdout, stderr = cli("predict", "--checkpoint", run_dir / "best.npz", image,
                                   "--gradcam", held)
        assert code == 2 and "Traceback" not in stderr and "x.png" in stdout
        assert f"pid {holder.pid}" in stderr and "--gradcam" in stderr
        assert sorted(os.listdir(held)) == [".minicnn.lock"], "nothing was written into it"
    finally:
        holder.kill()
        holder.wait()


def test_read_only_disk(run_dir, tmp_path):
    with tmpfs(tmp_path / "ro", ro=True) as ro:
        refused(["train", "--out", ro / "run", *TINY_CLI, "--epochs", "1"], "--out", "Read-only")
        refused(["train", "--out", ro, *TINY_CLI, "--epochs", "1"], "--out", "not writable")
        refused(["evaluate", "--checkpoint", run_dir / "best.npz", "--out", ro / "ev"], "--out", "Read-only")


def test_disk_full_mid_run_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    with tmpfs(tmp_path / "small", size="8m") as disk:
        out = disk / "run"

        def fill_the_disk(epoch, batch, run):
            if (epoch, batch) == (1, 0):
                with open(disk / "filler", "wb") as f:
                    with contextlib.suppress(OSError):
                        while True:
                            f.write(b"\0" * (1 << 16))
        real_fit = fit
        monkeypatch.setattr("minicnn.cli.commands.train.fit",
                            lambda cfg, **kw: real_fit(cfg, on_batch_end=fill_the_disk, **kw))
        refused(["train", "--out", out, *TINY_CLI, "--epochs", "2", "--no-figures"],
                "could not write the checkpoint", "No space left", "unchanged")
        assert load_checkpoint(out / "last.npz").epoch == 1
        assert load_checkpoint(out / "best.npz").epoch == 1
        assert not list(out.glob(".*.tmp")), "no half-written file is left"


# --- faults: signals, kills, two trainers --------------------------------------------------------------

DRIVER = r"""
import sys, time
import minicnn.xray.checkpoint as C
import minicnn.cli.commands.train as T
from minicnn import cli
mode, argv = sys.argv[1], sys.argv[2:]
real_fit, real_savez, calls = T.fit, C.np.savez, []
def slow(epoch, batch, run):
    print(f"BATCH {epoch} {batch}", flush=True)
    time.sleep(0.4)
def hang_on_third_write(f, **arrays):
    calls.append(1)
    if len(calls) == 3:
        f.write(b"PK half a checkpoint")
        f.flush()
        print("WRITING", flush=True)
        time.sleep(600)
    return real_savez(f, **arrays)
if mode == "slow-data":
    import minicnn.xray.train as TR
    real_open = TR.open_splits
    def slow_open(*a, **k):
        print("READING", flush=True)
        time.sleep(30)
        return real_open(*a, **k)
    TR.open_splits = slow_open
if mode == "slow":
    T.fit = lambda cfg, **kw: real_fit(cfg, on_batch_end=slow, **kw)
if mode == "hang-write":
    C.np.savez = hang_on_third_write
sys.exit(cli.main(argv))
"""


class Trainer:
    """`minicnn train` in a child process, read line by line, killed if it overruns."""

    def __init__(self, mode, out, *argv, cwd=None):
        self.proc = subprocess.Popen([sys.executable, "-c", DRIVER, mode, "train", "--out", str(out),
                                      *TINY_CLI, "--no-figures", *argv],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.timer = threading.Timer(120, self.proc.kill)
        self.timer.start()
        self.lines = []

    def wait_for(self, marker):
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith(marker):
                return line
        raise AssertionError(f"the trainer ended before {marker!r}:\n{''.join(self.lines)}"
                             f"{self.proc.stderr.read()}")

    def finish(self):
        stdout, stderr = self.proc.communicate()
        self.timer.cancel()
        return self.proc.returncode, "".join(self.lines) + stdout, stderr


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_after_the_batch_and_a_second_trainer_is_refused(tmp_path, sig, code):
    out = tmp_path / "run"
    a = Trainer("slow", out, "--epochs", "2")
    a.wait_for("BATCH 0 1")
    if sig == signal.SIGTERM:  # meanwhile, a second trainer into the same folder
        refused(["train", "--out", out, *TINY_CLI, "--epochs", "1"], f"pid {a.proc.pid}",
                "another minicnn run")
        refused(["train", "--out", out, *TINY_CLI, "--epochs", "1", "--overwrite"], f"pid {a.proc.pid}")
    a.proc.send_signal(sig)
    rc, stdout, stderr = a.finish()
    assert rc == code, (rc, stdout, stderr)
    assert "Traceback" not in stderr and "minicnn train --resume --out" in stdout
    ck = load_checkpoint(out / "last.npz")  # after batch 2 (or a little later on a busy machine)
    assert ck.epoch * 4 + ck.batch >= 2 and ck.epoch < 2, (ck.epoch, ck.batch)
    if sig == signal.SIGTERM:  # resuming reaches the weights of a run never stopped
        code_r, _, err = cli("train", "--resume", "--out", out, "--quiet", "--no-figures")
        assert code_r == 0, err
        whole = tmp_path / "whole"
        assert cli("train", "--out", whole, *TINY_CLI, "--no-figures", "--epochs", "2")[0] == 0
        a_w, b_w = load_checkpoint(out / "last.npz").weights, load_checkpoint(whole / "last.npz").weights
        for name in a_w:
            np.testing.assert_array_equal(a_w[name], b_w[name], err_msg=name)


def test_a_second_sigterm_stops_at_once_still_saving_a_whole_checkpoint(tmp_path):
    out = tmp_path / "run"
    a = Trainer("slow", out, "--epochs", "2")
    a.wait_for("BATCH 0 0")
    a.proc.send_signal(signal.SIGTERM)  # asks for a stop after this batch
    a.wait_for("SIGTERM: stopping")
    a.proc.send_signal(signal.SIGTERM)  # stops at once
    rc, stdout, stderr = a.finish()
    assert rc == 143 and "Traceback" not in stderr, (rc, stdout, stderr)
    ck = load_checkpoint(out / "last.npz")
    assert (ck.epoch, ck.batch) == (0, 1)
    assert not list(out.glob(".*.tmp"))


def test_sigterm_before_training_starts_exits_143_cleanly(tmp_path):
    out = tmp_path / "run"
    a = Trainer("slow-data", out, "--epochs", "1")
    a.wait_for("READING")
    a.proc.send_signal(signal.SIGTERM)
    rc, stdout, stderr = a.finish()
    assert rc == 143 and "Traceback" not in stderr and "stopped by SIGTERM" in stderr, (rc, stderr)
    assert snapshot(out) == {}, "nothing but the (released) lock file"


def test_sigkill_mid_write_leaves_nothing_that_the_next_start_does_not_sweep(tmp_path):
    out = tmp_path / "run"
    # --average-last 0: epoch 1 writes best.npz and last.npz, so the third write is epoch 2's
    a = Trainer("hang-write", out, "--epochs", "2", "--average-last", "0")
    a.wait_for("WRITING")
    a.proc.kill()
    a.finish()
    left = list(out.glob(".*.npz.*.tmp"))
    assert left, "the killed write should have left its temporary file (the case under test)"
    assert load_checkpoint(out / "last.npz").epoch == 1, "the previous checkpoint is whole"
    assert load_checkpoint(out / "best.npz").epoch == 1
    code, _, err = cli("train", "--resume", "--out", out, "--quiet", "--no-figures")
    assert code == 0, err
    assert not list(out.glob(".*.tmp")), "the next start sweeps a killed write's leftovers"
    assert load_checkpoint(out / "last.npz").epoch == 2


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "run"
    a = Trainer("slow", out, "--epochs", "1")
    a.wait_for("BATCH 0 0")
    refused(["train", "--out", out, *TINY_CLI, "--epochs", "1"], f"pid {a.proc.pid}")
    a.proc.kill()
    a.finish()
    code, _, err = cli("train", "--out", out, *TINY_CLI, "--epochs", "1", "--no-figures")
    assert code == 0, err


def test_memory_budget_is_checked_before_allocating(tmp_path, monkeypatch):
    monkeypatch.setenv("MINICNN_MAX_BYTES", str(1 << 20))
    refused(["train", "--out", tmp_path / "o", "--synthetic-size", "2000", "--image-size", "64", *QUICK],
            "would take", "--synthetic-size")
    assert validate.human_bytes(3 << 30) == "3.0 GiB"


def test_data_api_calls_name_the_bad_argument():
    from minicnn.data import ArrayDataset, transforms as T
    image = np.zeros((1, 8, 8), np.float32)
    for call, words in [
            (lambda: T.Resize(0)(image), ["Resize: size", "0"]),
            (lambda: T.Resize(-3), ["Resize: size", "-3"]),
            (lambda: T.Resize((8, 8, 8)), ["Resize: size must be an int or (height, width)"]),
            (lambda: T.RandomAffine(degrees=float("nan")), ["RandomAffine: degrees", "nan"]),
            (lambda: T.RandomAffine(scale=(1.1, 0.9)), ["RandomAffine: scale[1]", "0.9"]),
            (lambda: T.RandomHorizontalFlip(p=2), ["RandomHorizontalFlip: p", "2"]),
            (lambda: ArrayDataset(np.zeros((2, 1, 8, 8)), [np.nan, 1], ("a", "b")), ["labels", "nan"]),
            (lambda: ArrayDataset(np.zeros((2, 1, 8, 8)), [5, 1], ("a", "b")), ["labels", "label 5", "2 classes"]),
            (lambda: open_splits("synthetic", channels=2), ["channels", "2"])]:
        with pytest.raises(UserError) as info:
            call()
        for w in words:
            assert w in str(info.value), (w, str(info.value))
