"""The training settings table, the average of the last epochs' weights, and flip test-time
augmentation: each does what its help text says, and each is checked by its flag."""
import numpy as np
import pytest

from cli_run import TINY
from minicnn import cli
from minicnn.errors import UserError
from minicnn.nn import models
from minicnn.xray import settings
from minicnn.xray.checkpoint import load_checkpoint
from minicnn.xray.train import TrainingInterrupted, fit, predict


def test_every_option_is_read_from_the_table_with_its_default(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["train", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for s in settings.SETTINGS:
        if s.flag is None:
            continue
        assert s.flag in text, s.flag
        if "{default}" in s.help:
            assert f"default: {s.default}" in text, (s.flag, s.default)
    assert set(settings.DEFAULTS) == {s.key for s in settings.SETTINGS}
    assert settings.DEFAULTS["model"] in models.MODELS


@pytest.mark.parametrize("key, value, words", [
    ("average_last", -1, ["--average-last", "-1"]),
    ("average_last", 4, ["--average-last", "at most --epochs, 3"]),
    ("tta", "rotate", ["--tta", "'rotate'", "none, flip"]),
    ("model", "resnet", ["--model", "'resnet'", "chestxray"]),
    ("weight_decay", -0.1, ["--weight-decay", "-0.1"]),
    ("threshold", 1.0, ["--threshold", "between 0 and 1", "1.0"]),
    ("threshold", 0, ["--threshold", "between 0 and 1", "got 0"]),
    ("threshold", float("nan"), ["--threshold", "nan"]),
    ("threshold", "youden", ["--threshold", "'val'", "'youden'"]),
    ("threshold", True, ["--threshold", "True"]),
])
def test_a_bad_setting_is_refused_by_its_flag(tmp_path, key, value, words):
    with pytest.raises(UserError) as err:
        fit(out=str(tmp_path), epochs=3, **{key: value}, **TINY)
    for w in words:
        assert w in str(err.value), (w, str(err.value))
    assert not any(tmp_path.iterdir()), "nothing may be written for a refused setting"


def _snapshots():
    """A hook keeping the model's state after each epoch's last batch."""
    kept = {}

    def hook(epoch, batch, run):
        if batch == len(run.loader) - 1:
            kept[epoch + 1] = {k: v.copy() for k, v in run.model.state_dict().items()}
    return kept, hook


def test_the_kept_network_is_the_mean_of_the_last_epochs_weights(tmp_path):
    kept, hook = _snapshots()
    result = fit(out=str(tmp_path), epochs=3, average_last=2, on_batch_end=hook, **TINY)
    ck = load_checkpoint(tmp_path / "best.npz")
    assert result.metrics["averaged_epochs"] == [2, 3] and ck.epoch == 3
    for name, value in ck.weights.items():
        if "running" in name or "num_batches" in name:
            continue
        want = ((kept[2][name].astype(np.float64) + kept[3][name]) / 2).astype(value.dtype)
        np.testing.assert_allclose(value, want, rtol=1e-6, atol=1e-7, err_msg=name)
    # batch norm measured again: one plain average over the training batches, not epoch 3's
    bn = [k for k in ck.weights if k.endswith("running_mean")]
    assert bn, "the default network has batch norm"
    assert not np.allclose(ck.weights[bn[0]], kept[3][bn[0]])
    batches = -(-TINY["synthetic_sizes"]["train"] // TINY["batch_size"])
    assert int(ck.weights[bn[0].replace("running_mean", "num_batches_tracked")]) == batches


def test_an_interrupted_average_resumes_to_the_same_network(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    fit(out=str(full), epochs=3, average_last=2, **TINY)

    def stop(epoch, batch, run):
        if (epoch, batch) == (2, 1):
            raise KeyboardInterrupt
    with pytest.raises(TrainingInterrupted):
        fit(out=str(part), epochs=3, average_last=2, on_batch_end=stop, **TINY)
    fit(out=str(part), epochs=3, average_last=2, resume=True, **TINY)
    a, b = load_checkpoint(full / "best.npz").weights, load_checkpoint(part / "best.npz").weights
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_flip_scores_the_mean_of_an_image_and_its_mirror():
    rng = np.random.default_rng(0)
    model = models.build("chestxray_bn", image_size=16).eval()
    x = rng.standard_normal((5, 1, 16, 16)).astype(np.float32)
    plain, _ = predict(model, x)
    mirror, _ = predict(model, np.ascontiguousarray(x[..., ::-1]))
    both, logp = predict(model, x, tta="flip")
    np.testing.assert_allclose(both, (plain + mirror) / 2, rtol=1e-6)
    np.testing.assert_allclose(np.exp(logp), both, rtol=1e-6)
    assert not np.allclose(plain, mirror), "a test image that is its own mirror proves nothing"


@pytest.mark.parametrize("argv, words", [
    (["--average-last", "-1"], ["--average-last", "-1"]),
    (["--epochs", "2", "--average-last", "3"], ["--average-last", "at most --epochs, 2"]),
    (["--threshold", "1.5"], ["--threshold", "between 0 and 1", "1.5"]),
])
def test_the_command_line_refuses_a_bad_new_flag_in_one_line(tmp_path, argv, words):
    from cli_run import TINY_CLI, run_cli
    code, _, err = run_cli("train", "--out", tmp_path / "run", *TINY_CLI, *argv)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)


def test_a_threshold_that_is_not_a_number_is_refused_by_the_parser(tmp_path, capsys):
    from cli_run import TINY_CLI
    with pytest.raises(SystemExit) as done:
        cli.main(["train", "--out", str(tmp_path / "run"), *TINY_CLI, "--threshold", "youden"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and not (tmp_path / "run").exists()
    assert "--threshold" in err and "'val'" in err and "'youden'" in err, err


def test_a_resume_with_more_epochs_averages_the_new_last_epochs(tmp_path):
    """--resume may raise --epochs: the window of averaged epochs moves with it, and the
    kept network is the mean of the new last epochs, not of old and new mixed."""
    kept, hook = _snapshots()
    fit(out=str(tmp_path), epochs=3, average_last=2, **TINY)
    result = fit(out=str(tmp_path), epochs=5, average_last=2, resume=True, on_batch_end=hook,
                 **TINY)
    assert result.metrics["averaged_epochs"] == [4, 5]
    ck = load_checkpoint(tmp_path / "best.npz")
    for name, value in ck.weights.items():
        if "running" in name or "num_batches" in name:
            continue
        want = ((kept[4][name].astype(np.float64) + kept[5][name]) / 2).astype(value.dtype)
        np.testing.assert_allclose(value, want, rtol=1e-6, atol=1e-7, err_msg=name)


def test_the_threshold_is_fixed_or_chosen_on_val_as_asked(tmp_path):
    """--threshold T scores val and test at T (0.5 when not given, the arg-max of two
    classes); --threshold val takes Youden's J on the validation probabilities."""
    from minicnn.xray import metrics as M
    runs = {t: fit(out=str(tmp_path / str(t)), epochs=1, average_last=0, threshold=t, **TINY)
            for t in (None, 0.3, "val")}
    for t, want in ((None, 0.5), (0.3, 0.3)):
        m = runs[t].metrics
        assert m["threshold_rule"] == "fixed"
        assert m["val"]["threshold"] == m["test"]["threshold"] == want
        assert load_checkpoint(tmp_path / str(t) / "best.npz").threshold == want
    r = runs["val"]
    y = (r.splits.val.labels == r.positive).astype(int)
    chosen = M.youden_threshold(y, r.val_probs[:, r.positive])
    assert r.metrics["threshold_rule"] == "val"
    assert r.metrics["val"]["threshold"] == r.metrics["test"]["threshold"] == chosen
    # the same network each time: only the operating point moved
    np.testing.assert_array_equal(runs[None].test_probs, r.test_probs)
    yt = (r.splits.test.labels == r.positive).astype(int)
    for t in (None, 0.3, "val"):
        m = runs[t].metrics["test"]
        p = runs[t].test_probs[:, r.positive]
        assert m["accuracy"] == ((p >= m["threshold"]) == yt).mean()


def test_a_threshold_for_three_classes_is_refused(tmp_path):
    from PIL import Image
    for split in ("train", "val", "test"):
        for k, name in enumerate(("NORMAL", "BACTERIA", "VIRUS")):
            (tmp_path / "xr" / split / name).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((12, 12), 40 + 80 * k + i, np.uint8)).save(
                    tmp_path / "xr" / split / name / f"{i}.png")
    with pytest.raises(UserError) as err:
        fit(data=str(tmp_path / "xr"), out=str(tmp_path / "run"), epochs=1, threshold=0.4,
            image_size=8, batch_size=4, progress=False, log=lambda *a: None)
    for w in ("--threshold 0.4", "3 classes", "BACTERIA", "most probable"):
        assert w in str(err.value), (w, str(err.value))


def test_a_fixed_threshold_applies_to_every_finding(tmp_path):
    from minicnn.data.chestxray14_layout import write_chestmnist_like
    path = write_chestmnist_like(tmp_path / "chestmnist.npz",
                                 {"train": 64, "val": 32, "test": 32}, size=16, seed=2)
    result = fit(data=str(path), image_size=16, epochs=1, batch_size=16, augment=False,
                 threshold=0.3, out=str(tmp_path / "run"), progress=False, log=lambda *a: None)
    m = result.metrics
    assert m["threshold_rule"] == "fixed"
    for split in ("val", "test"):
        assert {row["threshold"] for row in m[split]["per_label"].values()} == {0.3}
    assert load_checkpoint(tmp_path / "run" / "best.npz").thresholds.tolist() == [0.3] * 14
