"""`minicnn train`: train the chest X-ray classifier, score it, draw the figures.

    minicnn train                                   # SYNTHETIC X-rays, under a minute
    minicnn train --data pneumoniamnist.npz         # the real MedMNIST file
    minicnn train --data chest_xray/                # Kermany folders: train/ val/ test/
    minicnn train --data ChestX-ray14/              # NIH's published folder: 14 findings
    minicnn train --data ChestX-ray14/ --labels Pneumonia   # one finding: a binary task
    minicnn train --resume --out runs/pneumoniamnist  # go on after Ctrl-C
"""
import os
import signal

from minicnn import validate
from minicnn.xray.checkpoint import CheckpointError, load_checkpoint
from minicnn.errors import UserError
from minicnn.xray import settings
from minicnn.xray.runlock import RunLock
from minicnn.xray.train import DEFAULTS, RUN_OUTPUTS, TrainingInterrupted, fit, resolve_config
from .figures import (SYNTHETIC_NOTE, evaluation_figures, model_figures, multilabel_figures,
                      note_for)

# settings that --resume may change; the others continue as saved
RESUMABLE_OVERRIDES = ("epochs", "device")


def add_arguments(parser):
    settings.add_arguments(parser)     # every training setting: default, help, check in one table
    a = parser.add_argument
    a("--synthetic-size", type=int, metavar="N", help="with synthetic data: N training images, "
      "N/4 each for val and test (default: 1600)")
    a("--resume", action="store_true", help="continue the run saved in --out (last.npz)")
    a("--overwrite", action="store_true", help="start afresh in an --out folder that holds a run")
    a("--no-figures", dest="figures", action="store_false", help="skip the PNG figures")
    a("--quiet", action="store_true", help="no progress bars")


def default_out(data):
    if data in (None, "synthetic"):
        return os.path.join("runs", "synthetic")
    name = os.path.basename(os.path.normpath(os.fspath(data)))
    return os.path.join("runs", name[:-4] if name.lower().endswith(".npz") else name)


def _given(args):
    given = settings.given(args)
    if given["data"] not in (None, "synthetic"):
        given["data"] = os.path.abspath(given["data"])
    n = getattr(args, "synthetic_size", None)
    if n is not None:
        validate.integer("--synthetic-size", n, 8, 10_000_000)
        given["synthetic_sizes"] = {"train": n, "val": max(n // 4, 4), "test": max(n // 4, 4)}
    else:
        given["synthetic_sizes"] = None
    return given


def _resume_config(args, out, given):
    last = os.path.join(out, "last.npz")
    if not os.path.exists(last):
        raise UserError(f"nothing to resume in {out}: there is no last.npz (start without "
                        "--resume, or give the --out folder of the run to continue)")
    ck = load_checkpoint(last)
    saved = dict(ck.train_config)
    if given["model"] is not None and given["model"] != saved.get("model"):
        raise CheckpointError(f"{last}: holds a {ck.describe()}, not a {given['model']} model; "
                              "resume with the same --model, or start a new run in another --out")
    for key, value in given.items():
        if value is None or key in RESUMABLE_OVERRIDES:
            continue
        if value != saved.get(key):
            was, now = _flag_value(key, saved.get(key)), _flag_value(key, value)
            raise UserError(f"{last}: this run was started with {was}; --resume continues it "
                            f"with its own settings (only --epochs and --device may change), "
                            f"so {now} cannot apply")
    for key in RESUMABLE_OVERRIDES:
        if given[key] is not None:
            saved[key] = given[key]
    saved["out"] = out
    unknown = sorted(set(saved) - set(DEFAULTS))
    if unknown:
        raise CheckpointError(f"{last}: its train_config holds settings this minicnn does not "
                              f"know ({', '.join(unknown)}); it cannot be resumed here")
    try:
        return resolve_config(**saved)
    except UserError as err:
        raise CheckpointError(f"{last}: its saved settings (train_config) are not valid "
                              f"({err}); it cannot be resumed") from None


def _as_flag(key, value):
    return "--synthetic-size" if key == "synthetic_sizes" else settings.flag(key)


def _flag_value(key, value):
    """A saved setting as the user would have typed it: "--synthetic-size 32", "--lr 0.001"."""
    if key == "synthetic_sizes":
        return "the default synthetic set size" if value is None else \
            f"--synthetic-size {value.get('train')}"
    if key == "augment":
        return "augmentation on" if value in (True, None) else "--no-augment"
    if key == "labels" and value is None:
        return "all the findings (no --labels)"
    if value is None:
        return f"{_as_flag(key, value)} at its default"
    return f"{_as_flag(key, value)} {value}"


def run(args):
    out = args.out or default_out(args.data)
    given = _given(args)
    # every value checked before the folder is touched
    cfg = resolve_config(**dict({k: v for k, v in given.items() if v is not None}, out=out))
    with RunLock(out, "--out"):  # held from the guard below to the end of training
        if args.resume:
            cfg = _resume_config(args, out, given)
        else:
            found = [name for name in RUN_OUTPUTS if os.path.exists(os.path.join(out, name))]
            if found and not args.overwrite:
                raise UserError(f"{out} already holds a training run ({', '.join(found)}); "
                                "continue it with --resume, choose another --out folder, or "
                                "replace it with --overwrite")
        _say_data(cfg)
        try:
            result = fit(cfg, progress=not args.quiet, resume=args.resume)
        except TrainingInterrupted as stop:
            where = f"after epoch {stop.epoch}" if stop.batch == 0 else \
                f"epoch {stop.epoch + 1}, after batch {stop.batch}"
            what = "Stopped by SIGTERM" if stop.signum == signal.SIGTERM else "Interrupted"
            print(f"\n{what}. A resumable checkpoint is saved: {stop.path} ({where}).\n"
                  f"To continue exactly where it stopped:\n"
                  f"  minicnn train --resume --out {out}")
            return 128 + (stop.signum or signal.SIGINT)
        figures = _figures(result, cfg, out) if args.figures else []
    _report(result, out, figures)
    return 0


def _say_data(cfg):
    if cfg["data"] == "synthetic":
        print("Data: SYNTHETIC chest X-rays drawn by minicnn's generator (not real patients). "
              "For real X-rays: minicnn download pneumoniamnist, then "
              "minicnn train --data <the .npz file>.")
    else:
        print(f"Data: {cfg['data']}")
        if cfg["labels"] is not None:
            print(f"Findings: {cfg['labels']}")


def _figures(result, cfg, out):
    folder = os.path.join(out, "figures")
    note = note_for(result.metrics["data"])
    from minicnn.xray import viz
    paths = [viz.training_curves(result.metrics["epochs"], os.path.join(folder, "curves.png"),
                                 note=note)]
    test = result.splits.test
    if getattr(test, "multilabel", False):
        return paths + multilabel_figures(folder, "test", test, result.test_probs,
                                          result.metrics["test"], note, model=result.model,
                                          mean=result.mean, std=result.std,
                                          device=cfg["device"])
    paths += evaluation_figures(folder, "test", test, result.test_probs, result.positive,
                                result.metrics["test"].get("threshold", 0.5), note)
    paths += model_figures(folder, result.model, test, result.mean, result.std,
                           result.positive, cfg["device"], note)
    return paths


def _fmt(value, digits=3):
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def finding_table(test, val=None):
    """The per-finding table of multi-label metrics, as text."""
    names = list(test["per_label"])
    width = max(8, max(len(n) for n in names))
    head = f"  {'finding':<{width}}  {'AUC':>6}  {'sens':>6}  {'spec':>6}  {'thresh':>6}  " \
           f"{'positives':>9}" + (f"  {'val AUC':>7}" if val else "")
    lines = [head]
    for name in names:
        r = test["per_label"][name]
        row = (f"  {name:<{width}}  {_fmt(r['auc']):>6}  {_fmt(r['sensitivity']):>6}  "
               f"{_fmt(r['specificity']):>6}  {_fmt(r['threshold']):>6}  {r['n_positive']:>9}")
        if val:
            row += f"  {_fmt(val['per_label'][name]['auc']):>7}"
        lines.append(row)
    lines.append(f"  {'mean AUC':<{width}}  {_fmt(test['mean_auc']):>6}" +
                 (f"  {'':>6}  {'':>6}  {'':>6}  {'':>9}  {_fmt(val['mean_auc']):>7}"
                  if val else ""))
    return "\n".join(lines)


def _rule(metrics, what, fixed=None):
    """How the threshold was set: "<what> chosen on validation (Youden's J)", or
    "<fixed or what> (--threshold T)" / "(the default --threshold)"."""
    if metrics.get("threshold_rule") == "val":
        return f"{what} chosen on validation (Youden's J)"
    given = metrics["config"].get("threshold")
    if fixed is not None:
        what = f"{fixed} {float(given):g}"
    return f"{what} ({'the default --threshold' if given is None else f'--threshold {given}'})"


def _report(result, out, figures):
    m = result.metrics
    synthetic = m["data"].get("synthetic")
    test, val = m["test"], m["val"]
    classes = m["data"]["classes"]
    print()
    if "per_label" in test and "sensitivity" not in test:
        print(f"Best epoch {m['best_epoch']} (highest mean validation ROC-AUC "
              f"{_fmt(val['mean_auc'], 4)}); {_rule(m, 'a threshold per finding', 'each finding at threshold')}.")
        print(f"Test set, {test['n']} images{' — ' + SYNTHETIC_NOTE if synthetic else ''}:")
        print(finding_table(test, val))
    elif "sensitivity" in test:
        kept = f"Best epoch {m['best_epoch']} (highest validation ROC-AUC {_fmt(val['auc'], 4)})"
        if m.get("averaged_epochs"):
            first, last = m["averaged_epochs"]
            kept = (f"Weights averaged over epochs {first}-{last} (validation ROC-AUC "
                    f"{_fmt(val['auc'], 4)})")
        print(f"{kept}; {_rule(m, 'decision threshold ' + format(test['threshold'], '.3f'))}.")
        print(f"Test set, {test['n']} images{' — ' + SYNTHETIC_NOTE if synthetic else ''}:")
        print(f"  accuracy    {_fmt(test['accuracy'])}     ROC-AUC     {_fmt(test['auc'])}")
        print(f"  sensitivity {_fmt(test['sensitivity'])}     specificity {_fmt(test['specificity'])}"
              f"   ({test['fn']} missed {classes[result.positive]}, {test['fp']} false alarms)")
        print(f"  precision   {_fmt(test['precision'])}     F1          {_fmt(test['f1'])}")
    else:
        print(f"Test set, {test['n']} images: accuracy {_fmt(test['accuracy'])}, "
              f"mean one-vs-rest ROC-AUC {_fmt(test['auc'])}")
    if synthetic:
        print("  These numbers are on SYNTHETIC images: they show that the pipeline works, "
              "not how it would do on real X-rays.")
    print(f"\nOutputs in {out}/:")
    print(f"  {os.path.join(out, 'best.npz')}   the chosen network "
          f"(minicnn evaluate / predict --checkpoint ...)")
    print(f"  {os.path.join(out, 'last.npz')}   the latest state (minicnn train --resume --out {out})")
    print(f"  {os.path.join(out, 'metrics.json')}")
    if m["data"].get("splits_csv"):
        print(f"  {m['data']['splits_csv']}   the split: image, patient, train/val/test")
    for path in figures:
        print(f"  {path}")
    print("minicnn is for learning and research; it is not a medical device.")
