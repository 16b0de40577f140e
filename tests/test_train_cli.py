"""Training end to end on tiny SYNTHETIC sets: the CLI, metrics.json, figures, evaluate,
predict, download, and resuming to exactly the weights of an uninterrupted run."""
import hashlib
import json
import os
import signal
import urllib.error

import numpy as np
import pytest
from PIL import Image

from minicnn.xray.checkpoint import load_checkpoint
from minicnn.cli.commands import download
from minicnn.xray.train import TrainingInterrupted, fit

from cli_run import TINY, TINY_CLI, run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "synthetic"
    code, stdout, stderr = run_cli("train", "--out", out, "--epochs", "2", *TINY_CLI)
    assert code == 0, stderr
    return out, stdout


def test_cli_help_and_unknown_command():
    code, stdout, _ = run_cli()
    assert code == 0 and "train" in stdout and "predict" in stdout and "doctor" in stdout
    with pytest.raises(SystemExit) as info:
        run_cli("nonsense")
    assert info.value.code == 2


def test_train_writes_metrics_checkpoints_and_figures(trained):
    out, stdout = trained
    assert "SYNTHETIC" in stdout
    m = json.loads((out / "metrics.json").read_text())
    for split in ("test", "val"):
        for key in ("accuracy", "auc", "sensitivity", "specificity", "precision", "f1", "threshold"):
            assert key in m[split], f"metrics.json {split} lacks {key}"
    assert m["test"]["threshold"] == m["val"]["threshold"], "test uses the threshold chosen on val"
    assert m["data"]["synthetic"] is True and m["data"]["source"] == "synthetic"
    assert m["data"]["split_sizes"] == {"train": 32, "val": 8, "test": 8}
    assert sum(m["data"]["class_counts"]["train"].values()) == 32
    assert [e["epoch"] for e in m["epochs"]] == [1, 2]
    for key in ("train_loss", "train_acc", "val_loss", "val_auc", "val_acc", "lr", "seconds"):
        assert key in m["epochs"][0]
    best = load_checkpoint(out / "best.npz")
    assert best.epoch == m["best_epoch"] and best.threshold == pytest.approx(m["test"]["threshold"])
    assert load_checkpoint(out / "last.npz").epoch == 2
    for name in ("curves", "confusion_matrix", "roc", "predictions", "filters", "gradcam",
                 "feature_maps"):
        path = out / "figures" / f"{name}.png"
        assert path.exists() and path.stat().st_size > 1000, f"missing figure {path}"
        assert str(path) in stdout, "the CLI says where each figure is"


def test_a_second_train_into_the_same_folder_does_not_overwrite(trained):
    out, _ = trained
    before = (out / "best.npz").read_bytes()
    code, _, stderr = run_cli("train", "--out", out, "--epochs", "1", *TINY_CLI)
    assert code == 2 and "already holds a training run" in stderr and "--resume" in stderr
    assert (out / "best.npz").read_bytes() == before


def test_evaluate_command(trained, tmp_path):
    out, _ = trained
    code, stdout, stderr = run_cli("evaluate", "--checkpoint", out / "best.npz", "--data",
                                   "synthetic", "--out", tmp_path / "ev")
    assert code == 0, stderr
    got = json.loads((tmp_path / "ev" / "metrics.json").read_text())["test"]
    want = json.loads((out / "metrics.json").read_text())["test"]
    for key in ("accuracy", "auc", "sensitivity", "specificity"):
        assert got[key] == pytest.approx(want[key], abs=1e-12), f"evaluate disagrees on {key}"
    assert "SYNTHETIC" in stdout and (tmp_path / "ev" / "roc.png").exists()


def test_predict_command(trained, tmp_path):
    out, _ = trained
    from minicnn.data.synthetic import synthetic_split
    x, _ = synthetic_split(2, 64, seed=0, split="test")
    Image.fromarray((x[0, 0] * 255).astype(np.uint8)).save(tmp_path / "a.png")
    Image.fromarray((x[1, 0] * 65535).astype(np.uint16)).save(tmp_path / "b.png")
    code, stdout, stderr = run_cli("predict", "--checkpoint", out / "best.npz", "--json",
                                   "--gradcam", tmp_path / "cam", tmp_path / "a.png", tmp_path / "b.png")
    assert code == 0, stderr
    rows = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert [os.path.basename(r["image"]) for r in rows] == ["a.png", "b.png"]
    for r in rows:
        assert 0.0 <= r["p_pneumonia"] <= 1.0
        assert r["prediction"] == ("PNEUMONIA" if r["p_pneumonia"] >= r["threshold"] else "NORMAL")
    assert (tmp_path / "cam" / "a_gradcam.png").exists()


def _weights(path):
    return load_checkpoint(path).weights


def _assert_same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        if not np.array_equal(wa[name], wb[name]):
            diff = np.abs(wa[name].astype(np.float64) - wb[name])
            k = np.unravel_index(int(np.argmax(diff)), diff.shape)
            raise AssertionError(f"{name}{list(k)}: {wa[name][k]!r} != {wb[name][k]!r}")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    fit(out=str(out), epochs=2, dropout=0.5, **TINY)
    return out


def test_resume_after_an_epoch_gives_the_same_weights(uninterrupted, tmp_path):
    fit(out=str(tmp_path), epochs=1, dropout=0.5, **TINY)
    fit(out=str(tmp_path), epochs=2, dropout=0.5, resume=True, **TINY)
    _assert_same_weights(uninterrupted / "last.npz", tmp_path / "last.npz")
    a = json.loads((uninterrupted / "metrics.json").read_text())
    b = json.loads((tmp_path / "metrics.json").read_text())
    assert [e["train_loss"] for e in a["epochs"]] == [e["train_loss"] for e in b["epochs"]]
    assert a["test"] == b["test"]


def test_interrupt_mid_epoch_then_resume_gives_the_same_weights(uninterrupted, tmp_path):
    def stop(epoch, batch, run):
        if (epoch, batch) == (1, 1):
            raise KeyboardInterrupt
    with pytest.raises(TrainingInterrupted) as info:
        fit(out=str(tmp_path), epochs=2, dropout=0.5, on_batch_end=stop, **TINY)
    assert (info.value.epoch, info.value.batch) == (1, 2)
    ck = load_checkpoint(tmp_path / "last.npz")
    assert (ck.epoch, ck.batch) == (1, 2)
    fit(out=str(tmp_path), epochs=2, dropout=0.5, resume=True, **TINY)
    _assert_same_weights(uninterrupted / "last.npz", tmp_path / "last.npz")


def test_ctrl_c_stops_after_the_batch_and_says_how_to_resume(trained, tmp_path, monkeypatch):
    # `trained` ran the same settings (TINY_CLI, 2 epochs) without a stop
    def press_ctrl_c(epoch, batch, run):
        if (epoch, batch) == (0, 2):
            os.kill(os.getpid(), signal.SIGINT)
    real_fit = fit

    def fit_with_ctrl_c(cfg, **kw):
        return real_fit(cfg, on_batch_end=press_ctrl_c, **kw)
    monkeypatch.setattr("minicnn.cli.commands.train.fit", fit_with_ctrl_c)
    code, stdout, stderr = run_cli("train", "--out", tmp_path, "--epochs", "2", *TINY_CLI)
    assert code == 130, stderr
    assert "minicnn train --resume --out" in stdout and str(tmp_path) in stdout
    assert load_checkpoint(tmp_path / "last.npz").batch == 3
    monkeypatch.undo()
    code, stdout, stderr = run_cli("train", "--resume", "--out", tmp_path, "--quiet")
    assert code == 0, stderr
    _assert_same_weights(trained[0] / "last.npz", tmp_path / "last.npz")


def test_download_checks_the_md5(tmp_path, monkeypatch):
    payload = b"pretend this is the data set"
    source = tmp_path / "mirror.npz"
    source.write_bytes(payload)
    code, _, stderr = run_cli("download", "pneumoniamnist", "--dir", tmp_path / "d",
                              "--url", source.as_uri())
    assert code == 2 and "MD5" in stderr and "was not kept" in stderr
    assert not (tmp_path / "d" / "pneumoniamnist.npz").exists()
    assert os.listdir(tmp_path / "d") == [], "no partial download left behind"
    spec = dict(download.DATASETS["pneumoniamnist"], md5=hashlib.md5(payload).hexdigest())
    monkeypatch.setitem(download.DATASETS, "pneumoniamnist", spec)
    code, stdout, _ = run_cli("download", "pneumoniamnist", "--dir", tmp_path / "d",
                              "--url", source.as_uri())
    assert code == 0 and (tmp_path / "d" / "pneumoniamnist.npz").read_bytes() == payload


def test_download_any_size_checks_medmnist_md5_and_prints_license_and_citation(tmp_path,
                                                                               monkeypatch):
    from minicnn.data import medmnist_info
    payload = b"pretend this is chestmnist at 64 pixels"
    source = tmp_path / "mirror.npz"
    source.write_bytes(payload)
    official = medmnist_info.SETS["chestmnist"]["files"][64]
    code, _, stderr = run_cli("download", "chestmnist", "--size", "64", "--dir", tmp_path / "d",
                              "--url", source.as_uri())
    assert code == 2 and official[1] in stderr and "was not kept" in stderr
    assert os.listdir(tmp_path / "d") == []
    monkeypatch.setitem(medmnist_info.SETS["chestmnist"]["files"], 64,
                        (official[0], hashlib.md5(payload).hexdigest()))
    code, stdout, _ = run_cli("download", "chestmnist", "--size", "64", "--dir", tmp_path / "d",
                              "--url", source.as_uri())
    assert code == 0 and (tmp_path / "d" / "chestmnist_64.npz").read_bytes() == payload
    assert "License: CC BY 4.0" in stdout and "MedMNIST v2" in stdout and "Sci Data" in stdout
    code, stdout, _ = run_cli("download", "chestmnist", "--size", "64", "--dir", tmp_path / "d")
    assert code == 0 and "already there" in stdout and "License" in stdout


def test_every_size_of_a_medmnist_file_gets_its_class_names(tmp_path):
    from minicnn.data.datasets import open_splits
    rng = np.random.default_rng(0)
    for name, size, width, classes in (("pneumoniamnist_64.npz", 8, 1, ["NORMAL", "PNEUMONIA"]),
                                       ("breastmnist_224.npz", 8, 1, ["malignant",
                                                                      "normal, benign"]),
                                       ("chestmnist_128.npz", 8, 14, None)):
        arrays = {}
        for split, n in (("train", 12), ("val", 4), ("test", 4)):
            arrays[f"{split}_images"] = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
            arrays[f"{split}_labels"] = (np.add.outer(np.arange(n), np.arange(width)) % 2
                                         ).astype(np.uint8)
        np.savez(tmp_path / name, **arrays)
        splits = open_splits(tmp_path / name)
        from minicnn.data.chestxray14 import FINDINGS
        assert list(splits.train.classes) == (classes or list(FINDINGS)), name


def test_download_without_network_says_where_to_put_the_file(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")
    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    code, _, stderr = run_cli("download", "pneumoniamnist", "--dir", tmp_path)
    assert code == 2
    assert "name resolution" in stderr and "28209eda62fecd6e6a2d98b1501bb15f" in stderr
    assert str(tmp_path / "pneumoniamnist.npz") in stderr and "../shared/data" in stderr
    assert "Traceback" not in stderr


def test_label_smoothing_loss_matches_pytorch():
    torch = pytest.importorskip("torch")
    import minicnn
    from minicnn.xray.train import classification_loss
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 3))
    t = np.array([0, 2, 1, 1, 0, 2])
    logits = minicnn.tensor(z, requires_grad=True, dtype=np.float64)
    loss = classification_loss(logits, minicnn.tensor(t), label_smoothing=0.2)
    loss.backward()
    zt = torch.tensor(z, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(zt, torch.tensor(t), label_smoothing=0.2)
    ref.backward()
    assert abs(loss.item() - ref.item()) <= 1e-12 + 1e-10 * abs(ref.item()), (loss.item(), ref.item())
    g, gr = logits.grad.numpy(), zt.grad.numpy()
    worst = np.unravel_index(int(np.argmax(np.abs(g - gr))), g.shape)
    assert np.allclose(g, gr, atol=1e-12, rtol=1e-10), f"grad {worst}: {g[worst]} vs {gr[worst]}"


def test_predict_scores_each_frame_of_a_multi_frame_dicom_when_asked(tmp_path):
    pydicom_data = pytest.importorskip("pydicom.data")
    cine = pydicom_data.get_testdata_file("rtdose.dcm")  # 15 frames of 10x10
    code, _, stderr = run_cli("train", "--synthetic-size", "32", "--image-size", "8",
                              "--batch-size", "8", "--epochs", "1", "--quiet", "--no-figures",
                              "--out", tmp_path / "run")
    assert code == 0, stderr
    ck = tmp_path / "run" / "best.npz"
    code, _, stderr = run_cli("predict", "--checkpoint", ck, cine)
    assert code == 2 and "15 frames" in stderr and "--frames each" in stderr
    code, stdout, stderr = run_cli("predict", "--checkpoint", ck, "--frames", "each", "--json",
                                   "--gradcam", tmp_path / "cams", cine)
    assert code == 0, stderr
    rows = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert [r["image"] for r in rows] == [f"{cine}[frame {k}]" for k in range(15)]
    assert sorted(n for n in os.listdir(tmp_path / "cams") if n.endswith(".png")) == sorted(
        f"rtdose_frame{k}_gradcam.png" for k in range(15))
