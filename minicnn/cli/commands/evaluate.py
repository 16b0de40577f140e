"""`minicnn evaluate`: score a saved network on a split of a data set, at its saved threshold.

    minicnn evaluate --checkpoint runs/pneumoniamnist/best.npz --data pneumoniamnist.npz
    minicnn evaluate --checkpoint runs/ChestX-ray14/best.npz     # each finding at its threshold

The data is opened as training opened it: the same findings (--labels), and for data
whose validation split is carved from train, the same --val-fraction and --seed.
"""
import os

from minicnn import validate
from minicnn.xray.checkpoint import CheckpointError, load_checkpoint
from minicnn.data.datasets import open_splits
from minicnn.errors import UserError
from minicnn.xray.runlock import RunLock
from minicnn.xray.train import evaluate, write_json_atomic
from .figures import SYNTHETIC_NOTE, evaluation_figures, multilabel_figures, note_for
from .train import finding_table


def add_arguments(parser):
    a = parser.add_argument
    a("--checkpoint", required=True, help="a .npz written by minicnn train (best.npz)")
    a("--data", help="folder, .npz file or 'synthetic' (default: the data it was trained on)")
    a("--split", choices=["test", "val", "train"], default="test", help="default: test")
    a("--device", choices=["cpu", "cuda", "cuda-sim"], default="cpu")
    a("--out", help="folder for the results and figures (default: next to the checkpoint, "
      "in evaluate-<split>/)")
    a("--no-figures", dest="figures", action="store_false")


def run(args):
    ck = load_checkpoint(args.checkpoint)
    cfg = ck.train_config
    data = args.data or cfg.get("data", "synthetic")
    synthetic = data == "synthetic"
    seed = cfg.get("seed", 0)
    sizes = cfg.get("synthetic_sizes") if synthetic else None
    labels, fraction = cfg.get("labels"), cfg.get("val_fraction", 0.1)
    try:  # what the checkpoint says about its data, checked as the flags would be
        if not isinstance(data, str) or not data:
            raise UserError(f"data must be a path or 'synthetic', got {data!r}")
        validate.integer("seed", seed, 0, validate.MAX_SEED)
        validate.synthetic_sizes("synthetic_sizes", sizes)
        validate.number("val_fraction", fraction, lo=0, hi=1, lo_open=True, hi_open=True)
        if labels is not None and not isinstance(labels, (str, list)):
            raise UserError(f"labels must name findings, got {labels!r}")
    except UserError as err:
        raise CheckpointError(f"{args.checkpoint}: its train_config is not valid ({err}); "
                              "give --data") from None
    if ck.multilabel:
        labels = list(ck.classes)  # the findings the network has outputs for
    splits = open_splits(data, ck.image_size[0], ck.channels, seed=seed, synthetic_sizes=sizes,
                         labels=labels, val_fraction=fraction)
    if list(splits.train.classes) != ck.classes:
        raise UserError(f"{data}: its classes ({', '.join(splits.train.classes)}) are not those "
                        f"the network in {args.checkpoint} was trained on ({', '.join(ck.classes)})")
    dataset = splits[args.split]
    model = ck.build_model(args.device)
    if ck.multilabel != bool(getattr(dataset, "multilabel", False)):
        raise UserError(f"{data}: holds {'multi' if getattr(dataset, 'multilabel', False) else 'one'}"
                        f"-label data but {args.checkpoint} is a "
                        f"{'multi' if ck.multilabel else 'one'}-label network")
    threshold = list(ck.thresholds) if ck.multilabel else ck.threshold
    m, probs = evaluate(model, dataset, ck.norm_mean, ck.norm_std, ck.positive_class,
                        threshold=threshold, device=args.device, tta=ck.tta)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)),
                                   f"evaluate-{args.split}")
    with RunLock(out, "--out"):  # one writer per folder; the scores are computed already
        _write(args, ck, data, splits, dataset, m, probs, out)
    return 0


def _write(args, ck, data, splits, dataset, m, probs, out):
    result = {args.split: m, "checkpoint": os.path.abspath(args.checkpoint), "data": splits.info}
    write_json_atomic(os.path.join(out, "metrics.json"), result)
    note = note_for(splits.info)
    print(f"{args.checkpoint}: {ck.describe()}")
    print(f"{args.split} split of {data}, {m['n']} images{' — ' + SYNTHETIC_NOTE if note else ''}:")
    if "per_label" in m:
        print("  each finding at its threshold saved with the checkpoint (chosen on validation)")
        print(finding_table(m))
    elif "sensitivity" in m:
        print(f"  threshold {m['threshold']:.3f} (saved with the checkpoint)")
        for key in ("accuracy", "auc", "sensitivity", "specificity", "precision", "f1"):
            value = m[key]
            print(f"  {key:<12} {'n/a' if value != value else f'{value:.4f}'}")
        print(f"  TP {m['tp']}  FN {m['fn']}  FP {m['fp']}  TN {m['tn']}")
    else:
        print(f"  accuracy {m['accuracy']:.4f}  mean one-vs-rest ROC-AUC {m['auc']:.4f}")
    print(f"Results: {os.path.join(out, 'metrics.json')}")
    if args.figures and "per_label" in m:
        for path in multilabel_figures(out, args.split, dataset, probs, m, note):
            print(f"  {path}")
    elif args.figures:
        for path in evaluation_figures(out, args.split, dataset, probs, ck.positive_class,
                                       ck.threshold, note):
            print(f"  {path}")
