"""Bad input: each gives one clear message naming the file or value, exit code 2, no
traceback, and nothing already written is lost."""
import json

import numpy as np
import pytest
from PIL import Image

from minicnn.xray import checkpoint as C
from minicnn.xray.checkpoint import load_checkpoint
from minicnn.xray.train import NonFiniteLoss, fit

from cli_run import TINY, TINY_CLI, run_cli
from minicnn.xray.settings import DEFAULTS


def fails(*argv, match):
    """Run the CLI, expect exit code 2 and a one-message error containing every `match`."""
    code, stdout, stderr = run_cli(*argv)
    assert code == 2, f"exit code {code}; stderr: {stderr}"
    assert "Traceback" not in stderr
    for m in ([match] if isinstance(match, str) else match):
        assert m in stderr, f"{m!r} not in the error message:\n{stderr}"
    return stderr


def xray_folder(root, per_class=2, size=(12, 12), classes=("NORMAL", "PNEUMONIA")):
    for split in ("train", "val", "test"):
        for k, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(np.full(size, 50 + 120 * k + 10 * i, np.uint8)).save(d / f"{i}.png")
    return root


def train_on(folder, out, *extra):
    return ("train", "--data", folder, "--out", out, "--epochs", "1", "--image-size", "8",
            "--batch-size", "4", "--quiet", "--no-figures", *extra)


# --- data ---------------------------------------------------------------------------------------

def test_corrupt_and_non_image_files_are_named(tmp_path):
    root = xray_folder(tmp_path / "xr")
    (root / "train" / "NORMAL" / "broken.png").write_bytes(b"this is not a PNG at all")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "whole.png")  # big enough that half keeps the header
    good = (tmp_path / "whole.png").read_bytes()
    (root / "train" / "PNEUMONIA" / "cut.png").write_bytes(good[: len(good) // 2])
    stderr = fails(*train_on(root, tmp_path / "out"),
                   match=["2 file(s)", "broken.png", "not an image file", "cut.png", "truncated"])
    assert not (tmp_path / "out" / "last.npz").exists()
    assert stderr.count("\n") < 8


def test_empty_class_folder(tmp_path):
    root = xray_folder(tmp_path / "xr")
    for f in (root / "val" / "PNEUMONIA").iterdir():
        f.unlink()
    fails(*train_on(root, tmp_path / "out"),
          match=[str(root / "val" / "PNEUMONIA"), "holds no images"])


def test_class_folders_differ_between_splits(tmp_path):
    root = xray_folder(tmp_path / "xr")
    (root / "test" / "PNEUMONIA").rename(root / "test" / "COVID")
    fails(*train_on(root, tmp_path / "out"),
          match=["class folders differ", "missing from test: PNEUMONIA", "not in train: COVID"])


def test_missing_split(tmp_path):
    # without val/ a validation split is carved from train (tests/test_chestxray14_train.py);
    # without test/ there is nothing to score on
    root = xray_folder(tmp_path / "xr")
    for f in (root / "test").rglob("*.png"):
        f.unlink()
    for d in sorted((root / "test").iterdir()):
        d.rmdir()
    (root / "test").rmdir()
    fails(*train_on(root, tmp_path / "out"), match=["missing the test split", str(root / "test")])
    fails(*train_on(root / "train", tmp_path / "out"),
          match=["missing the train, val, test split", "point --data at the folder"])


def test_missing_data_path(tmp_path):
    fails("train", "--data", tmp_path / "nowhere", "--out", tmp_path / "o", match="no such file or folder")


def test_mixed_gray_and_rgb_images_are_converted(tmp_path):
    root = xray_folder(tmp_path / "xr")
    Image.fromarray(np.full((12, 12, 3), 90, np.uint8)).save(root / "train" / "NORMAL" / "rgb.png")
    Image.fromarray(np.full((12, 12, 4), 90, np.uint8)).save(root / "val" / "NORMAL" / "rgba.png")
    code, stdout, stderr = run_cli(*train_on(root, tmp_path / "out"))
    assert code == 0, stderr
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["data"]["class_counts"]["train"] == {"NORMAL": 3, "PNEUMONIA": 2}
    assert m["data"]["synthetic"] is False


def test_image_smaller_than_the_input(tmp_path):
    root = xray_folder(tmp_path / "xr")
    Image.fromarray(np.zeros((5, 6), np.uint8)).save(root / "test" / "NORMAL" / "tiny.png")
    fails(*train_on(root, tmp_path / "out"),
          match=["tiny.png", "5x6 pixels is smaller than the 8x8"])


# --- training --------------------------------------------------------------------------------------

def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    def poison(epoch, batch, run):
        if (epoch, batch) == (1, 0):  # ruin the weights during the second epoch
            first = next(run.model.parameters())
            first.array[...] = np.nan
    with pytest.raises(NonFiniteLoss) as info:
        fit(out=str(tmp_path), epochs=3, on_batch_end=poison, **TINY)
    message = str(info.value)
    assert "nan" in message and "epoch 2, batch 2" in message
    assert f"last good checkpoint is {tmp_path / 'last.npz'} (after epoch 1)" in message
    ck = load_checkpoint(tmp_path / "last.npz")
    assert ck.epoch == 1 and all(np.isfinite(w).all() for w in ck.weights.values())


def test_nan_loss_from_the_cli(tmp_path):
    fails("train", "--out", tmp_path, "--optimizer", "sgd", "--lr", "1e30", "--epochs", "1", *TINY_CLI,
          match=["training stopped: the loss became", "try a smaller --lr"])


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    real = C.np.savez
    calls = []

    def savez_fails_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:  # epoch 1 writes best.npz and last.npz; then the disk fills up
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)
    monkeypatch.setattr(C.np, "savez", savez_fails_in_epoch_two)
    # (--average-last 0: no average.npz, so the writes are best.npz, last.npz per epoch)
    fails("train", "--out", tmp_path, "--epochs", "2", "--average-last", "0", *TINY_CLI,
          match=["could not write the checkpoint", "No space left on device", "unchanged"])
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.npz").epoch == 1
    assert load_checkpoint(tmp_path / "best.npz").epoch == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".minicnn.lock") == \
        ["best.npz", "last.npz"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    fit(out=str(out), epochs=1, **TINY)
    return out


def test_truncated_checkpoint(run_dir, tmp_path):
    data = (run_dir / "best.npz").read_bytes()
    bad = tmp_path / "best.npz"
    bad.write_bytes(data[: len(data) // 3])
    fails("evaluate", "--checkpoint", bad, match=[str(bad), "damaged or truncated"])
    fails("predict", "--checkpoint", bad, tmp_path / "x.png", match=[str(bad), "damaged or truncated"])


def test_checkpoint_of_another_architecture(run_dir):
    before = (run_dir / "last.npz").read_bytes()
    fails("train", "--resume", "--out", run_dir, "--model", "alexnet",
          match=[str(run_dir / "last.npz"), f"holds a {DEFAULTS['model']} model",
                 "not a alexnet model"])
    fails("train", "--resume", "--out", run_dir, "--lr", "0.5",
          match=["started with --lr 0.001", "only --epochs and --device may change"])
    assert (run_dir / "last.npz").read_bytes() == before


def test_resume_with_nothing_to_resume(tmp_path):
    fails("train", "--resume", "--out", tmp_path, match=["nothing to resume", str(tmp_path)])


def test_predict_reports_bad_images_and_still_scores_the_good_ones(run_dir, tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.full((32, 40), 120, np.uint8)).save(good)
    (tmp_path / "bad.jpeg").write_text("not a jpeg")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "small.png")
    code, stdout, stderr = run_cli("predict", "--checkpoint", run_dir / "best.npz", good,
                                   tmp_path / "bad.jpeg", tmp_path / "small.png", tmp_path / "none.png")
    assert code == 2 and "Traceback" not in stderr
    assert "good.png" in stdout and "bad.jpeg" not in stdout
    for m in ("bad.jpeg: not an image file", "small.png: 4x4 pixels is smaller",
              "none.png: no such file"):
        assert m in stderr, f"{m!r} not in:\n{stderr}"


def test_bad_values_are_named(tmp_path):
    fails("train", "--out", tmp_path, "--epochs", "0", match="--epochs must be a positive integer, got 0")
    fails("train", "--out", tmp_path, "--lr", "-1", match="--lr must be a positive number, got -1.0")
    fails("train", "--out", tmp_path, "--synthetic-size", "2", match="--synthetic-size must be an integer from 8 to")
