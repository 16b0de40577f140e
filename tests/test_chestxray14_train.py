"""Training on multi-label data: ChestX-ray14's layout and a ChestMNIST-shaped .npz learn the
findings drawn into their (SYNTHETIC) images; per-finding metrics, splits.csv, checkpoints
with per-finding thresholds, predict / evaluate, and bad input as one-line CLI errors."""
import csv
import json
import os

import numpy as np
import pytest
import torch

from minicnn.xray import train as T
from minicnn.xray.checkpoint import CheckpointError, load_checkpoint
from minicnn.data.chestxray14 import FINDINGS
from minicnn.data.chestxray14_layout import write_chestmnist_like, write_chestxray14
from minicnn.data.datasets import open_splits
from minicnn.tensor import Tensor
from cli_run import run_cli

FEW = ("Effusion", "Mass", "Pneumonia")  # three findings: a small network learns them in seconds
QUIET = dict(progress=False, log=lambda *a: None)


@pytest.fixture
def cxr14(tmp_path, monkeypatch):
    monkeypatch.setenv("MINICNN_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "cxr14"
    entries = write_chestxray14(root, patients=60, images_per_patient=3, size=32, seed=2,
                                findings=FEW, p_finding=0.4)
    return root, entries


def _split_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_chestxray14_learns_the_drawn_findings_with_a_patient_wise_split(cxr14, tmp_path):
    root, entries = cxr14
    out = tmp_path / "run"
    result = T.fit(data=root, labels=",".join(FEW), image_size=16, epochs=6, batch_size=16,
                   augment=False, out=out, balance="weights", **QUIET)
    test = result.metrics["test"]
    assert list(test["per_label"]) == list(FEW)
    for finding, row in test["per_label"].items():
        assert set(row) == {"auc", "sensitivity", "specificity", "threshold", "n_positive"}
        assert row["n_positive"] == sum(finding in f for i, _, f in entries
                                        if i in (root / "test_list.txt").read_text().split())
    assert test["mean_auc"] == pytest.approx(np.mean([r["auc"] for r in test["per_label"].values()]))
    assert test["mean_auc"] > 0.75, test["per_label"]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test"]["mean_auc"] == pytest.approx(test["mean_auc"])
    assert set(saved["val"]["per_label"]) == set(FEW)
    # splits.csv: the official test list; train and val share no patient
    rows = _split_rows(out / "splits.csv")
    assert len(rows) == len(entries)
    official = sorted((root / "test_list.txt").read_text().split())
    assert sorted(r["image"] for r in rows if r["split"] == "test") == official
    patients = {s: {r["patient"] for r in rows if r["split"] == s} for s in ("train", "val", "test")}
    assert patients["val"] and not patients["train"] & patients["val"]
    assert not (patients["train"] | patients["val"]) & patients["test"]
    # the checkpoint carries the findings and the thresholds chosen on val
    ck = load_checkpoint(out / "best.npz")
    assert ck.multilabel and ck.classes == list(FEW)
    assert ck.thresholds.tolist() == [saved["val"]["per_label"][f]["threshold"] for f in FEW]
    assert [saved["test"]["per_label"][f]["threshold"] for f in FEW] == ck.thresholds.tolist()


def test_multilabel_npz_trains_with_chestxray14_names(tmp_path):
    path = write_chestmnist_like(tmp_path / "chestmnist.npz",
                                 {"train": 300, "val": 80, "test": 80}, size=16, seed=1,
                                 p_finding=0.3)
    result = T.fit(data=path, image_size=16, epochs=5, batch_size=16, augment=False,
                   out=tmp_path / "run", **QUIET)
    test = result.metrics["test"]
    assert list(test["per_label"]) == list(FINDINGS)
    assert test["mean_auc"] > 0.7, {k: v["auc"] for k, v in test["per_label"].items()}
    labels = np.load(path)["test_labels"]
    assert [test["per_label"][f]["n_positive"] for f in FINDINGS] == labels.sum(0).tolist()


def test_one_finding_is_the_binary_path(tmp_path):
    path = write_chestmnist_like(tmp_path / "chestmnist.npz",
                                 {"train": 120, "val": 40, "test": 40}, size=16, seed=3,
                                 p_finding=0.4)
    result = T.fit(data=path, labels="pneumonia", image_size=16, epochs=3, batch_size=16,
                   out=tmp_path / "run", **QUIET)
    test = result.metrics["test"]
    assert result.metrics["data"]["classes"] == ["no Pneumonia", "Pneumonia"]
    assert {"sensitivity", "specificity", "threshold", "tp", "fn"} <= set(test)
    row = test["per_label"]["Pneumonia"]
    assert row["auc"] == test["auc"] and row["threshold"] == test["threshold"]
    assert row["n_positive"] == int(np.load(path)["test_labels"][:, 6].sum())
    ck = load_checkpoint(tmp_path / "run" / "best.npz")
    assert not ck.multilabel and ck.positive_class == 1 and ck.thresholds is None
    older = {k: v for k, v in ck.arrays.items() if k != "multilabel"}  # written before it
    np.savez(tmp_path / "older.npz", **older)
    assert not load_checkpoint(tmp_path / "older.npz").multilabel


def test_multilabel_loss_is_torch_bce_with_pos_weight(backend):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 3)).astype(np.float32)
    y = (rng.random((5, 3)) < 0.4).astype(np.float32)
    w = T.pos_weights(y)
    n_pos = y.sum(0)
    assert np.allclose(w, (5 - n_pos) / np.maximum(n_pos, 1))
    for eps in (0.0, 0.2):
        logits = Tensor(z, requires_grad=True, device=backend)
        loss = T.multilabel_loss(logits, Tensor(y, device=backend), Tensor(w, device=backend), eps)
        loss.backward()
        zt = torch.tensor(z, requires_grad=True)
        ref = torch.nn.functional.binary_cross_entropy_with_logits(
            zt, torch.tensor(y * (1 - eps) + eps / 2), pos_weight=torch.tensor(w))
        ref.backward()
        assert np.allclose(loss.item(), ref.item(), atol=1e-6)
        assert np.allclose(logits.grad.numpy(), zt.grad.numpy(), atol=1e-6)


def test_predict_evaluate_and_checkpoint_checks(tmp_path):
    path = write_chestmnist_like(tmp_path / "chestmnist.npz",
                                 {"train": 200, "val": 60, "test": 60}, size=16, seed=4,
                                 p_finding=0.3)
    out = tmp_path / "run"
    code, stdout, _ = run_cli("train", "--data", path, "--labels", "Effusion,Mass,Hernia",
                              "--epochs", "3", "--batch-size", "16", "--out", out, "--quiet")
    assert code == 0 and "mean AUC" in stdout and "Hernia" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    code, stdout, _ = run_cli("evaluate", "--checkpoint", out / "best.npz", "--no-figures")
    assert code == 0
    again = json.loads((out / "evaluate-test" / "metrics.json").read_text())["test"]
    for f in ("Effusion", "Mass", "Hernia"):
        assert again["per_label"][f] == pytest.approx(metrics["test"]["per_label"][f])
    # predict: every finding at or above its own threshold, with its probability
    x = np.load(path)["test_images"][:3]
    files = []
    from PIL import Image
    for k, im in enumerate(x):
        files.append(tmp_path / f"x{k}.png")
        Image.fromarray(im).save(files[-1])
    code, stdout, _ = run_cli("predict", "--checkpoint", out / "best.npz", "--json", *files)
    assert code == 0
    ck = load_checkpoint(out / "best.npz")
    for line in stdout.strip().splitlines():
        r = json.loads(line)
        above = {f for f, t in zip(ck.classes, ck.thresholds) if r["probabilities"][f] >= t}
        assert {f["finding"] for f in r["findings"]} == above
    # with --gradcam: one figure per image, of the finding printed most probable
    code, stdout, _ = run_cli("predict", "--checkpoint", out / "best.npz", "--gradcam",
                              tmp_path / "cams", *files)
    assert code == 0
    for f in files:
        assert (tmp_path / "cams" / f"{f.stem}_gradcam.png").exists()
        assert f"Grad-CAM: {tmp_path / 'cams' / (f.stem + '_gradcam.png')}" in stdout
    # the thresholds are checked on load like every other field
    arrays = dict(np.load(out / "best.npz"))
    for bad in (np.array([0.5, 1.5, 0.2]), np.array([0.5, 0.5]), np.array([0.5, np.nan, 0.1])):
        np.savez(tmp_path / "bad.npz", **dict(arrays, thresholds=bad))
        with pytest.raises(CheckpointError, match="'thresholds' entry"):
            load_checkpoint(tmp_path / "bad.npz")
    np.savez(tmp_path / "bad.npz", **dict(arrays, multilabel=np.array(2)))
    with pytest.raises(CheckpointError, match="'multilabel' entry is 2"):
        load_checkpoint(tmp_path / "bad.npz")
    one_label = {k: v for k, v in arrays.items() if k != "thresholds"}
    np.savez(tmp_path / "bad.npz", **dict(one_label, multilabel=np.array(1)))
    with pytest.raises(CheckpointError, match="no 'thresholds' entry"):
        load_checkpoint(tmp_path / "bad.npz")
    np.savez(tmp_path / "bad.npz", **dict(arrays, multilabel=np.array(0)))
    with pytest.raises(CheckpointError, match="'thresholds' entry.*one-label"):
        load_checkpoint(tmp_path / "bad.npz")


def _one_line_error(argv, *words):
    code, stdout, stderr = run_cli(*argv)
    assert code == 2, (stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_chestxray14_input_is_a_one_line_cli_error(cxr14, tmp_path):
    root, entries = cxr14
    train = ["train", "--data", root, "--epochs", "1", "--quiet", "--out", tmp_path / "o"]
    _one_line_error(train + ["--val-fraction", "1.5"], "--val-fraction", "1.5")
    _one_line_error(train + ["--labels", "Efusion"], "--labels", "'Efusion'", "Effusion")
    _one_line_error(train, "no training image has Atelectasis", "--labels")
    train += ["--labels", ",".join(FEW)]
    _one_line_error(train + ["--balance", "sampler"], "--balance sampler", "--balance weights")
    entry = root / "Data_Entry_2017_v2020.csv"
    text = entry.read_text()
    entry.write_text(text.replace("Finding Labels", "Findings", 1))
    _one_line_error(train, "Data_Entry_2017_v2020.csv", "Finding Labels")
    lines = text.splitlines()
    image, label = lines[1].split(",")[:2]
    entry.write_text(text.replace(f"{image},{label},", f"{image},Pneumonia|Flu,", 1))
    _one_line_error(train, "line 2", "'Flu'", "14 findings")
    entry.write_text(text)
    gone = next(iter(root.glob("images_*/images/*.png")))
    moved = gone.with_suffix(".bak")
    gone.rename(moved)
    _one_line_error(train, "1 image(s) listed", gone.name)
    moved.rename(gone)
    test_list = root / "test_list.txt"
    tv_list = root / "train_val_list.txt"
    tests, tv = test_list.read_text(), tv_list.read_text().split()
    test_list.write_text(tests + tv[0] + "\n")
    _one_line_error(train, "both official lists", tv[0])
    # one image of a training patient moved to the test list: that patient is in both
    tv_list.write_text("\n".join(tv[1:]) + "\n")
    patient = next(p for i, p, _ in entries if i == tv[0])
    _one_line_error(train, "patient(s) have images in both", f"patient {patient}")


def test_folder_without_val_gets_a_stratified_seeded_split(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    counts = {"NORMAL": 20, "PNEUMONIA": 40}
    for split in ("train", "test"):
        for cls, n in counts.items():
            folder = tmp_path / "xr" / split / cls
            folder.mkdir(parents=True)
            for k in range(n if split == "train" else 4):
                Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(
                    folder / f"{k}.png")
    said = []
    splits = open_splits(tmp_path / "xr", image_size=8, val_fraction=0.25, seed=5,
                         log=said.append)
    assert splits.val.class_counts().tolist() == [5, 10]
    assert splits.train.class_counts().tolist() == [15, 30]
    assert not set(splits.train.files) & set(splits.val.files)
    assert splits.info["val_from_train"]["per_class"] == {"NORMAL": 5, "PNEUMONIA": 10}
    assert "no val/ folder" in said[0] and "seed 5" in said[0]
    again = open_splits(tmp_path / "xr", image_size=8, val_fraction=0.25, seed=5,
                        log=lambda *a: None)
    assert again.val.files == splits.val.files
    other = open_splits(tmp_path / "xr", image_size=8, val_fraction=0.25, seed=6,
                        log=lambda *a: None)
    assert other.val.files != splits.val.files
    assert os.path.basename(os.path.dirname(splits.val.files[0])) in counts


def test_multilabel_fit_on_a_cuda_device_equals_cpu(cuda_device, tmp_path):
    """BCE with pos_weight, the sigmoid scores and the per-finding metrics through the CUDA
    kernels: the cpu run's numbers (tiny: 16 training images of 12 px)."""
    from minicnn.testing import assert_close
    from torch_compare import numba_cpu
    path = write_chestmnist_like(tmp_path / "chestmnist.npz", {"train": 16, "val": 8, "test": 8},
                                 size=12, seed=5, p_finding=0.5)
    kw = dict(data=path, labels="Effusion,Mass", image_size=12, epochs=1, batch_size=8,
              balance="weights", **QUIET)
    with numba_cpu():
        on_cpu = T.fit(out=tmp_path / "cpu", device="cpu", **kw)
    here = T.fit(out=tmp_path / cuda_device, device=cuda_device, **kw)
    e, ce = here.metrics["epochs"][0], on_cpu.metrics["epochs"][0]
    for key in ("train_loss", "val_loss", "val_auc"):
        assert_close(e[key], ce[key], atol=1e-5, rtol=1e-4, name=f"{key} on {cuda_device}")
    assert_close(here.test_probs, on_cpu.test_probs, atol=1e-5, rtol=1e-4, name="test probs")
