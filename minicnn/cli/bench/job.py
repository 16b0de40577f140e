"""`minicnn bench --job pneumoniamnist`: a whole training run, minicnn beside PyTorch.

    minicnn bench --job pneumoniamnist                       data/pneumoniamnist.npz, 15 epochs
    minicnn bench --job pneumoniamnist --data FILE --job-epochs 3 --json job.json

Two processes, one after the other, each timed from its start to its exit:
  minicnn  `minicnn train --data FILE --epochs N --no-figures --out <a new folder>`, at
           minicnn's own defaults (the command a user runs)
  PyTorch  `python -m minicnn.cli.bench.torch_job ...`: the same recipe in PyTorch, given
           every setting from minicnn.xray.settings (resolve_config) and from
           minicnn.data.batch_augment.augmentation_batch (what the trainer applies), so the
           two stay the same job when those defaults change
Both include their start-up, reading the data, every epoch with its validation, and the
test score. The ratio is PyTorch's wall time over minicnn's (above 1: minicnn faster);
the test accuracy and ROC-AUC of both are printed beside it, for information (minicnn's
accuracy is at its decision threshold, printed beside it, PyTorch's at the arg-max).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from minicnn.cli.commands import download
from minicnn.data.batch_augment import BatchRandomAffine, augmentation_batch
from minicnn.errors import UserError
from minicnn.xray.train import resolve_config

from . import machine, report

JOBS = ("pneumoniamnist",)
DEFAULT_EPOCHS = 15
TARGET = 1.0  # PyTorch wall time / minicnn wall time, at least
# the console script's own entry, in a fresh interpreter
MINICNN = ("import sys; from minicnn.cli import main; sys.exit(main(sys.argv[1:]))",)
TAIL_LINES = 15


def default_data(job):
    """Where `minicnn download JOB` puts the file when run with its defaults."""
    parser = argparse.ArgumentParser()
    download.add_arguments(parser)
    return os.path.join(parser.get_default("dir"), download.DATASETS[job]["file"])


def data_path(args):
    """The --data file of the job, checked to exist."""
    path = args.data or default_data(args.job)
    if not os.path.isfile(path):
        where = "--data" if args.data else \
            f"the default of --data: where `minicnn download {args.job}` puts it"
        raise UserError(f"bench --job {args.job}: no file at {path} ({where}); fetch it with "
                        f"`minicnn download {args.job}`, or give --data FILE")
    return os.path.abspath(path)


def settings(data, epochs):
    """minicnn's defaults for `minicnn train --data DATA --epochs EPOCHS`, and the
    augmentation they imply, as the arguments of torch_job."""
    cfg = resolve_config(data=data, epochs=epochs)
    if cfg["model"] not in ("chestxray", "chestxray_bn"):
        raise UserError(f"bench --job: minicnn's default model {cfg['model']!r} has no "
                        "PyTorch version in minicnn.cli.bench.torch_job")
    if cfg["balance"] == "sampler" or cfg["image_size"] is not None:
        raise UserError("bench --job: minicnn's defaults (balanced batches, or a resized "
                        "input) have no PyTorch version in minicnn.cli.bench.torch_job")
    argv = ["--data", data, "--epochs", str(cfg["epochs"]), "--model", cfg["model"],
            "--batch-size", str(cfg["batch_size"]), "--optimizer", cfg["optimizer"],
            "--lr", repr(cfg["lr"]), "--momentum", repr(cfg["momentum"]),
            "--weight-decay", repr(cfg["weight_decay"]), "--schedule", cfg["schedule"],
            "--balance", cfg["balance"], "--label-smoothing", repr(cfg["label_smoothing"]),
            "--dropout", repr(cfg["dropout"]), "--seed", str(cfg["seed"]),
            "--average-last", str(cfg["average_last"]), "--tta", cfg["tta"]]
    # what the trainer applies (minicnn.xray.train: augmentation_batch, on whole batches)
    steps = augmentation_batch("default" if cfg["augment"] else "none")
    if not steps:
        return cfg, argv + ["--no-augment"]
    for step in steps:
        if not isinstance(step, BatchRandomAffine):
            raise UserError(f"bench --job: minicnn's augmentation step {step!r} has no "
                            "PyTorch version in minicnn.cli.bench.torch_job")
        argv += ["--degrees", repr(step.degrees[0]), repr(step.degrees[1]),
                 "--fill", str(step.fill), "--interpolation", step.interpolation,
                 "--flip", repr(step.flip_p)]
        if isinstance(step.translate, tuple):
            argv += ["--translate-pixels"] + [repr(t) for t in step.translate]
        elif step.translate is not None:
            argv += ["--translate", repr(step.translate)]
        if step.scale is not None:
            argv += ["--scale", repr(step.scale[0]), repr(step.scale[1])]
    return cfg, argv


def _tail(text):
    """The last lines of a child's output (progress bars' carriage returns as new lines)."""
    lines = [l for l in text.replace("\r", "\n").splitlines() if l.strip()]
    return "\n".join("    " + l for l in lines[-TAIL_LINES:]) or "    (no output)"


def _child(what, argv, timeout):
    """(wall seconds, stdout) of one child process; a UserError with its stderr's tail if
    it fails."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"bench --job: the {what} run took longer than {timeout:g} s and was "
                        "stopped") from None
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise UserError(f"bench --job: the {what} run failed (exit {proc.returncode}):\n"
                        f"  {' '.join(argv)}\n  its last output:\n"
                        f"{_tail(proc.stderr or proc.stdout)}")
    return wall, proc.stdout


def run_minicnn(data, epochs, timeout):
    """{"wall_s", "test_accuracy", "test_auc", "best_epoch", "threshold", ...} of minicnn's
    run."""
    out = tempfile.mkdtemp(prefix="minicnn-bench-job-")
    argv = [sys.executable, "-c", *MINICNN, "train", "--data", data, "--epochs", str(epochs),
            "--no-figures", "--out", os.path.join(out, "run")]
    try:
        wall, _ = _child("minicnn", argv, timeout)
        with open(os.path.join(out, "run", "metrics.json")) as f:
            metrics = json.load(f)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"wall_s": wall, "test_accuracy": metrics["test"]["accuracy"],
            "test_auc": metrics["test"]["auc"], "best_epoch": metrics["best_epoch"],
            "model": metrics["model"]["name"], "threshold": metrics["test"].get("threshold"),
            "threshold_rule": metrics.get("threshold_rule", "val"),
            "command": "minicnn " + " ".join(argv[3:-1] + ["<new folder>"])}


def run_torch(torch_argv, timeout):
    """{"wall_s", "test_accuracy", "test_auc", "best_epoch", ...} of the PyTorch run."""
    argv = [sys.executable, "-m", "minicnn.cli.bench.torch_job", *torch_argv]
    wall, stdout = _child("PyTorch", argv, timeout)
    lines = stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise UserError(f"bench --job: the PyTorch run printed no result line:\n"
                        f"{_tail(stdout)}") from None
    result.pop("epochs", None)
    return dict(result, wall_s=wall, command="python -m minicnn.cli.bench.torch_job "
                + " ".join(torch_argv))


def _fmt(v, digits=3):
    return "n/a" if v is None or v != v else f"{v:.{digits}f}"


def _rule(m):
    """How minicnn's decision threshold was set, e.g. "threshold 0.500, fixed"."""
    how = "chosen on val" if m.get("threshold_rule") == "val" else "fixed"
    return f"threshold {_fmt(m.get('threshold'))}, {how}"


def text(res):
    """The report's lines."""
    m, t = res["minicnn"], res["torch"]
    status = res["status"]
    return "\n".join([
        f"minicnn: {m['wall_s']:.1f} s   test ACC {_fmt(m['test_accuracy'])} "
        f"({_rule(m)})  AUC {_fmt(m['test_auc'])}  best epoch {m['best_epoch']}",
        f"PyTorch: {t['wall_s']:.1f} s   test ACC {_fmt(t['test_accuracy'])} (arg-max)  "
        f"AUC {_fmt(t['test_auc'])}  best epoch {t['best_epoch']}  "
        f"({t.get('torch_threads', '?')} threads)",
        f"ratio PyTorch wall / minicnn wall: {res['ratio']:.2f}x  target >= {TARGET:g}x  "
        f"{status}  (>1: minicnn faster)",
    ])


def measure(args):
    """Both runs of `--job JOB`, their lines printed as they finish: the result dict
    (the two runs, the ratio, its target and status)."""
    if args.job not in JOBS:
        raise UserError(f"bench --job: unknown job {args.job!r}; choose {', '.join(JOBS)}")
    epochs = DEFAULT_EPOCHS if args.job_epochs is None else args.job_epochs
    if epochs < 1:
        raise UserError(f"bench --job-epochs must be at least 1, got {epochs}")
    data = data_path(args)
    cfg, torch_argv = settings(data, epochs)
    try:
        # lazy: optional dependency; the other side must exist before minicnn's run starts
        import torch  # noqa: F401
    except ImportError:
        raise UserError("bench --job: the PyTorch side needs torch (pip install torch)") from None
    facts = machine.describe()
    timeout = float(getattr(args, "job_timeout", None) or 3600)
    print(f"minicnn bench --job {args.job}: `minicnn train` and the same job in PyTorch, "
          f"each in its own process, one after the other, timed from start to exit\n"
          f"data: {data}; {epochs} epoch{'' if epochs == 1 else 's'}; model {cfg['model']}, batch {cfg['batch_size']}, "
          f"{cfg['optimizer']} lr {cfg['lr']:g}, {cfg['schedule']} schedule, augmentation "
          f"{'on' if cfg['augment'] else 'off'}, weights averaged over the last "
          f"{cfg['average_last']} epochs, test-time augmentation {cfg['tta']}\n"
          f"machine: {facts['cpu']}, {facts['cores']} cores, load average "
          f"{facts['load_average_1m']}; both engines at their default threads", flush=True)
    print("running minicnn ...", file=sys.stderr, flush=True)
    ours = run_minicnn(data, epochs, timeout)
    print(f"running PyTorch ... (minicnn took {ours['wall_s']:.1f} s)", file=sys.stderr,
          flush=True)
    theirs = run_torch(torch_argv, timeout)
    ratio = report.ratio(ours["wall_s"], theirs["wall_s"])
    res = {"job": args.job, "data": data, "epochs": epochs, "minicnn": ours, "torch": theirs,
           "ratio": ratio, "target": TARGET, "status": report.verdict(ratio, TARGET)}
    print(text(res))
    return res


def run(args):
    """`minicnn bench --job JOB` alone: both runs, the report; the exit code."""
    res = measure(args)
    res["targets"] = report.targets({"job": res})
    facts = machine.describe()
    print(report.targets_text(res["targets"], facts))
    if args.json:
        report.write_json({"schema": "minicnn-bench-job/1", "machine": facts, **res}, args.json)
        print(f"\nreport written to {args.json}")
    return 0
