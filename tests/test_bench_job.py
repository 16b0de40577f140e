"""`minicnn bench --job`: both runs happen and are reported, and the PyTorch side is the
same job (the same network, normalisation, augmentation, AUC) as minicnn's. Nothing here
judges a time: the bench's own target line does that."""
import argparse
import json
import math

import numpy as np
import pytest

from minicnn.cli import bench
from minicnn.cli.bench import job, torch_job
from minicnn.errors import UserError
from minicnn.nn import models


def _args(argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(argv)


def _tiny_npz(path, size=16, seed=0):
    """A MedMNIST-format file (uint8 N x H x W images, uint8 N x 1 labels per split): class 1
    images are brighter, so a network can learn something in one epoch."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", 48), ("val", 16), ("test", 16)):
        y = np.arange(n) % 2
        x = rng.integers(0, 120, size=(n, size, size)) + 100 * y[:, None, None]
        arrays[f"{split}_images"] = x.astype(np.uint8)
        arrays[f"{split}_labels"] = y.astype(np.uint8).reshape(n, 1)
    np.savez(path, **arrays)
    return path


def test_job_runs_both_sides_and_reports_times_and_ratio(tmp_path, capsys):
    pytest.importorskip("torch")
    data = _tiny_npz(tmp_path / "tiny.npz")
    report = tmp_path / "job.json"
    code = bench.run(_args(["--job", "pneumoniamnist", "--data", str(data), "--job-epochs", "1",
                            "--json", str(report)]))
    out = capsys.readouterr().out
    assert code == 0, out
    rep = json.loads(report.read_text())
    assert rep["schema"] == "minicnn-bench-job/1" and rep["epochs"] == 1
    for side in ("minicnn", "torch"):
        wall = rep[side]["wall_s"]
        assert isinstance(wall, float) and math.isfinite(wall) and wall > 0
        assert 0.0 <= rep[side]["test_accuracy"] <= 1.0
        assert rep[side]["best_epoch"] == 1
    assert rep["ratio"] == pytest.approx(rep["torch"]["wall_s"] / rep["minicnn"]["wall_s"])
    assert rep["status"] == ("PASS" if rep["ratio"] >= 1.0 else "BELOW")
    assert f"minicnn: {rep['minicnn']['wall_s']:.1f} s" in out
    assert f"PyTorch: {rep['torch']['wall_s']:.1f} s" in out
    assert f"{rep['ratio']:.2f}x  target >= 1x  {rep['status']}" in out
    # the PyTorch run was given minicnn's defaults, model included
    from minicnn.xray.train import DEFAULTS
    assert f"--model {DEFAULTS['model']}" in rep["torch"]["command"]
    assert rep["minicnn"]["model"] == DEFAULTS["model"]


def test_one_run_measures_the_steps_and_then_the_whole_job(tmp_path, capsys):
    pytest.importorskip("torch")
    data = _tiny_npz(tmp_path / "tiny.npz")
    report = tmp_path / "both.json"
    code = bench.run(_args(["--quick", "--parts", "steps", "--job", "pneumoniamnist", "--data",
                            str(data), "--job-epochs", "1", "--json", str(report)]))
    out = capsys.readouterr().out
    assert code == 0, out
    rep = json.loads(report.read_text())
    assert rep["steps"] and rep["job"]["epochs"] == 1 and "ops" not in rep
    assert "Training step" in out and "ratio PyTorch wall / minicnn wall" in out
    assert any(t["what"].startswith("training job pneumoniamnist") for t in rep["targets"])


def test_torch_job_is_given_minicnns_defaults():
    from minicnn.data.batch_augment import augmentation_batch
    from minicnn.xray.train import DEFAULT_LR, DEFAULTS
    cfg, argv = job.settings("x.npz", 3)
    ns = torch_job.parser().parse_args(argv)
    assert ns.epochs == 3 and ns.model == DEFAULTS["model"]
    assert ns.batch_size == DEFAULTS["batch_size"] and ns.optimizer == DEFAULTS["optimizer"]
    assert ns.lr == (DEFAULTS["lr"] or DEFAULT_LR[DEFAULTS["optimizer"]])
    assert ns.weight_decay == DEFAULTS["weight_decay"]
    assert ns.label_smoothing == DEFAULTS["label_smoothing"] and ns.seed == DEFAULTS["seed"]
    (affine,) = augmentation_batch("default")       # what the trainer applies
    assert tuple(ns.degrees) == tuple(affine.degrees) and tuple(ns.scale) == tuple(affine.scale)
    assert ns.translate == affine.translate and ns.flip == affine.flip_p
    assert ns.fill == str(affine.fill) and ns.interpolation == affine.interpolation
    assert ns.average_last == cfg["average_last"] and ns.tta == DEFAULTS["tta"]


@pytest.mark.parametrize("name", ["chestxray", "chestxray_bn"])
def test_torch_job_network_is_minicnns_model(name):
    torch = pytest.importorskip("torch")
    if name not in models.MODELS:
        pytest.skip(f"this minicnn has no model {name!r}")
    from minicnn.interop import to_torch
    size = [28, 28]
    reference = to_torch(models.build(name, in_channels=1, num_classes=2, image_size=size))
    ours = torch_job.network(name, 1, 2, tuple(size), 0.0)

    def layers(module):
        return [(n, type(m).__name__, [tuple(p.shape) for p in m.parameters(recurse=False)])
                for n, m in module.named_modules() if not list(m.children())]
    assert layers(ours) == layers(reference)
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    # the same weights give the same logits: the layers' settings agree too
    ours.load_state_dict(reference.state_dict())
    ours.eval(), reference.eval()
    x = torch.randn(3, 1, *size)
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=1e-5)


def test_torch_job_augmentation_moves_pixels_as_minicnns():
    torch = pytest.importorskip("torch")
    from minicnn.data.transforms import augmentation
    affine, _ = augmentation("default")
    rng = np.random.default_rng(1)
    h = w = 28
    yy, xx = np.mgrid[0:h, 0:w]
    image = (0.5 + 0.4 * np.sin(xx / 3.0) * np.cos(yy / 4.0) + 0.002 * xx).astype(np.float32)
    image = image[None]                                        # (1, H, W), smooth and lopsided
    for angle, tx, ty, s in [(8.0, 1.2, -0.7, 1.05), (-9.5, -1.5, 1.0, 0.93), (0.0, 0.0, 0.0, 1.0)]:
        affine.draw = lambda rng, w, h, p=(angle, tx, ty, s): p
        want = affine(image, rng)
        for flip in (False, True):
            theta = torch_job.affine_theta(torch.tensor([angle]), torch.tensor([tx]),
                                           torch.tensor([ty]), torch.tensor([s]),
                                           torch.tensor([flip]), h, w).float()
            got = torch_job.augment(torch.from_numpy(image[None]), theta, affine.fill,
                                    affine.interpolation)[0].numpy()
            ref = want[:, :, ::-1] if flip else want
            err = np.abs(got - ref)[:, 2:-2, 2:-2]             # the border: resamplers differ
            assert err.mean() < 0.01 and err.max() < 0.08, (angle, tx, ty, s, flip, err.max())


def test_torch_job_auc_and_stats_agree_with_minicnns():
    from minicnn.xray import metrics
    from minicnn.xray.train import channel_stats
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.round(rng.random(200) * 0.5 + 0.3 * y, 2)           # rounded: many ties
    assert torch_job.auc(y, p) == pytest.approx(metrics.roc_auc(y, p), abs=1e-12)
    assert math.isnan(torch_job.auc(np.ones(5), np.arange(5.0)))
    x = rng.random((10, 1, 6, 6)).astype(np.float32)
    for a, b in zip(torch_job.channel_stats(x), channel_stats(x)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_job_without_its_data_names_the_flag_and_the_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"no file at data/pneumoniamnist\.npz.*--data.*"
                                        r"minicnn download pneumoniamnist"):
        bench.run(_args(["--job", "pneumoniamnist"]))
    with pytest.raises(UserError, match=r"no file at .*missing\.npz \(--data\)"):
        bench.run(_args(["--job", "pneumoniamnist", "--data", str(tmp_path / "missing.npz")]))
    with pytest.raises(UserError, match="--job-epochs must be at least 1"):
        bench.run(_args(["--job", "pneumoniamnist", "--job-epochs", "0"]))
    with pytest.raises(UserError, match="--data and --job-epochs belong to --job"):
        bench.run(_args(["--quick", "--data", "x.npz"]))


def test_a_failing_child_reports_its_stderr_tail(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, train_images=np.zeros((4, 8, 8), np.uint8))  # no labels, no val / test
    with pytest.raises(UserError, match=r"(?s)the minicnn run failed \(exit \d+\).*its last "
                                        r"output:.*bad\.npz"):
        job.run_minicnn(str(bad), 1, timeout=300)
    pytest.importorskip("torch")
    with pytest.raises(UserError, match=r"(?s)the PyTorch run failed \(exit 1\).*its last "
                                        r"output:.*has no train_labels, val_images"):
        job.run_torch(["--data", str(bad)] + job.settings(str(bad), 1)[1][2:], timeout=300)
