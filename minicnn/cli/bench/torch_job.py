"""`minicnn train`'s job written in PyTorch: the other side of `minicnn bench --job`.

    python -m minicnn.cli.bench.torch_job --data pneumoniamnist.npz --epochs 15 \
        --model chestxray --batch-size 64 --optimizer adam --lr 0.001 ...

Every setting comes as an argument (the bench reads them from minicnn.xray.train's
DEFAULTS and minicnn.data.transforms.augmentation), so this file imports nothing of
minicnn's engine: the process's start-up is PyTorch's own. The recipe is minicnn's:
  - the .npz's train/val/test splits (uint8 / 255), normalised by the training split's
    per-channel mean and std (train.channel_stats, train.normalise)
  - the network of --model in torch.nn (ChestXrayCNN, or ChestXrayBN with batch norm),
    named features / classifier like minicnn's, at PyTorch's default initialisation
  - each epoch: the training images shuffled, batches of --batch-size, each batch
    augmented at once (a random turn, shift and zoom about the centre, then a horizontal
    flip, as transforms.RandomAffine + RandomHorizontalFlip, through one affine_grid /
    grid_sample), then normalised; cross-entropy (class weights, label smoothing as
    train.classification_loss); Adam or SGD; a cosine schedule stepped per epoch
  - validation ROC-AUC after each epoch; the best epoch's weights are kept and the test
    split is scored once with them: accuracy at the arg-max and ROC-AUC.
The last line of stdout is the result as JSON.
"""
import argparse
import copy
import json
import math
import sys
import time

import numpy as np


def auc(y, score):
    """ROC-AUC of scores (N,) for 0/1 labels y (N,) by ranks (ties get their mean rank);
    nan when one class is missing."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    pos, n = int(y.sum()), y.size
    if pos == 0 or pos == n:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    sorted_scores = score[order]
    ranks = np.empty(n, np.float64)
    # runs of equal scores share the mean of their 1-based ranks
    edges = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], edges))
    ends = np.concatenate((edges, [n]))
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = 0.5 * (s + 1 + e)
    neg = n - pos
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def images_nchw(x, where):
    """MedMNIST images uint8 (N, H, W) (or uint16, or float in [0, 1]) -> float32
    (N, 1, H, W) in [0, 1]."""
    x = np.asarray(x)
    if x.ndim != 3:
        raise SystemExit(f"torch_job: {where} has shape {x.shape}; this job takes grey "
                         "images (N, H, W)")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / np.float32(255)
    elif x.dtype == np.uint16:
        x = x.astype(np.float32) / np.float32(65535)
    else:
        x = x.astype(np.float32)
    return x[:, None]


def channel_stats(x):
    """(mean (C,), std (C,)) float32 of x (N, C, H, W), summed in float64; a flat channel
    gets std 1 (minicnn.xray.train.channel_stats)."""
    x64 = x.astype(np.float64)
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = x64.sum(axis=(0, 2, 3)) / max(count, 1)
    std = np.sqrt(np.maximum((x64 * x64).sum(axis=(0, 2, 3)) / max(count, 1) - mean * mean, 0.0))
    std = np.where(std > 1e-6, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def load(path):
    """{split: (images float32 (N, 1, H, W) in [0, 1], labels int64 (N,))} of a MedMNIST .npz."""
    out = {}
    with np.load(path, allow_pickle=False) as f:
        missing = [f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels")
                   if f"{s}_{k}" not in f.files]
        if missing:
            raise SystemExit(f"torch_job: {path} has no {', '.join(missing)}; a MedMNIST file "
                             "holds train/val/test _images and _labels")
        for split in ("train", "val", "test"):
            x = images_nchw(f[f"{split}_images"], f"{path}: {split}_images")
            y = np.asarray(f[f"{split}_labels"]).reshape(-1).astype(np.int64)
            if y.shape[0] != x.shape[0]:
                raise SystemExit(f"torch_job: {path}: {split} has {x.shape[0]} images but "
                                 f"{y.shape[0]} labels")
            out[split] = (x, y)
    return out


# ----------------------------------------------------------------------------- the network

def network(name, in_channels=1, num_classes=2, image_size=(28, 28), dropout=0.0):
    """minicnn's model `name` ("chestxray" | "chestxray_bn") in torch.nn: .features then
    .classifier, the same layers in the same places as minicnn.nn.models builds them.
    x (N, in_channels, H, W) -> logits (N, num_classes)."""
    import torch.nn as tnn  # lazy: optional dependency, as in run()

    if name not in ("chestxray", "chestxray_bn"):
        raise SystemExit(f"torch_job: --model {name!r} has no PyTorch version here; "
                         "choose chestxray or chestxray_bn")
    h, w = (s // 2 // 2 // 2 for s in image_size)
    layers = []
    for c_in, c_out in ((in_channels, 16), (16, 32), (32, 64)):
        if name == "chestxray":
            layers += [tnn.Conv2d(c_in, c_out, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2)]
        else:  # no conv bias: batch norm's shift replaces it
            layers += [tnn.Conv2d(c_in, c_out, 3, padding=1, bias=False), tnn.BatchNorm2d(c_out),
                       tnn.ReLU(), tnn.MaxPool2d(2)]

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.features = tnn.Sequential(*layers)
            self.classifier = tnn.Sequential(
                tnn.Flatten(), tnn.Linear(64 * h * w, 512), tnn.ReLU(), tnn.Dropout(dropout),
                tnn.Linear(512, num_classes))

        def forward(self, x):
            return self.classifier(self.features(x))

    return Net()


# ----------------------------------------------------------------------------- augmentation

def affine_theta(angle, tx, ty, scale, flip, h, w):
    """affine_grid's matrices (B, 2, 3) for turns by `angle` degrees (B,), shifts (tx, ty)
    pixels (B,), zooms (B,) about the centre, then a left-right mirror where flip (B,) is
    true: output pixel p reads input pixel  c + A^-1 (p - c - t),  A = scale * rotation
    (minicnn's RandomAffine), written in grid_sample's [-1, 1] coordinates."""
    import torch  # lazy: optional dependency, as in run()
    rad = angle * (math.pi / 180.0)
    cos, sin = torch.cos(rad) / scale, torch.sin(rad) / scale
    # pixel offsets from the centre -> normalised: x_n = 2 x / w, y_n = 2 y / h
    txn, tyn = 2.0 * tx / w, 2.0 * ty / h
    a, b = cos, sin * (h / w)
    d, e = -sin * (w / h), cos
    theta = torch.stack([torch.stack([a, b, -(a * txn + b * tyn)], 1),
                         torch.stack([d, e, -(d * txn + e * tyn)], 1)], 1)
    sign = 1.0 - 2.0 * flip.to(theta.dtype)  # mirroring the output: x_n -> -x_n
    theta[:, :, 0] = theta[:, :, 0] * sign[:, None]
    return theta


def augment(x, theta, fill, interpolation):
    """x (B, C, H, W) resampled through theta (B, 2, 3); fill "edge" repeats the border,
    a number brings that value in from outside."""
    import torch.nn.functional as F  # lazy: optional dependency, as in run()
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if fill == "edge":
        return F.grid_sample(x, grid, mode=interpolation, padding_mode="border",
                             align_corners=False)
    value = float(fill)
    return F.grid_sample(x - value, grid, mode=interpolation, padding_mode="zeros",
                         align_corners=False) + value


def draw(gen, n, h, w, args):
    """(angle, tx, ty, scale, flip) tensors (n,) drawn as RandomAffine.draw and
    RandomHorizontalFlip do, from the torch Generator gen."""
    import torch  # lazy: optional dependency, as in run()

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)
    angle = uniform(*args.degrees)
    zero = torch.zeros(n, dtype=torch.float64)
    tx = ty = zero
    if args.translate_pixels is not None:  # torchvision's form: whole pixels
        a, b = args.translate_pixels
        tx, ty = torch.round(uniform(-a * w, a * w)), torch.round(uniform(-b * h, b * h))
    elif args.translate:
        tx, ty = uniform(-args.translate, args.translate) * w, uniform(-args.translate,
                                                                      args.translate) * h
    scale = uniform(*args.scale) if args.scale is not None else zero + 1.0
    flip = torch.rand(n, generator=gen, dtype=torch.float64) < args.flip
    return angle, tx, ty, scale, flip


# ----------------------------------------------------------------------------- training

def loss_fn(logits, y, weight, label_smoothing):
    """minicnn.xray.train.classification_loss: (1 - eps) CE_weight + eps * mean -log p."""
    import torch.nn.functional as F  # lazy: optional dependency, as in run()
    loss = F.cross_entropy(logits, y, weight=weight)
    if label_smoothing > 0:
        uniform = -F.log_softmax(logits, dim=1).mean(dim=1).mean()
        loss = loss * (1.0 - label_smoothing) + uniform * label_smoothing
    return loss


def scores(model, x, mean, std, tta="none", batch=256):
    """Softmax probabilities (N, K) float64 of normalised images x (N, C, H, W) in eval mode;
    tta "flip": the mean of each image's and its mirror image's."""
    import torch  # lazy: optional dependency, as in run()
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            xb = (torch.from_numpy(x[i:i + batch]) - mean) / std
            p = torch.softmax(model(xb), dim=1).double()
            if tta == "flip":
                p = (p + torch.softmax(model(torch.flip(xb, dims=[3])), dim=1).double()) / 2
            out.append(p.numpy())
    return np.concatenate(out) if out else np.zeros((0, 2))


def average_of(states, model, xt, mean, std, batch):
    """The mean of `states` (state dicts) loaded into model, with batch norm's running
    statistics measured again as one plain average over the training images."""
    import torch  # lazy: optional dependency, as in run()
    avg = {k: (sum(s[k].double() for s in states) / len(states)).to(v.dtype)
           if v.is_floating_point() else v for k, v in states[-1].items()}
    model.load_state_dict(avg)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for i in range(0, xt.shape[0], batch):
            model((xt[i:i + batch] - mean) / std)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def run(args):
    # lazy: torch is optional (the tests use the numpy helpers above without it), and
    # the timed process loads it here, at the start of the run
    import torch
    t_start = time.perf_counter()
    data = load(args.data)
    x_train, y_train = data["train"]
    k = int(y_train.max()) + 1
    if k != 2:
        raise SystemExit(f"torch_job: {args.data}: train_labels hold {k} classes; this job "
                         "scores a two-class task (normal / pneumonia)")
    n, c, h, w = x_train.shape
    mean_np, std_np = channel_stats(x_train)
    mean = torch.from_numpy(mean_np).reshape(1, -1, 1, 1)
    std = torch.from_numpy(std_np).reshape(1, -1, 1, 1)

    torch.manual_seed(args.seed)
    model = network(args.model, c, k, (h, w), args.dropout)
    if args.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                              weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs) \
        if args.schedule == "cosine" else None
    weight = None
    if args.balance == "weights":  # minicnn.data.sampling.class_weights: N / (K n_k)
        counts = np.bincount(y_train, minlength=k).astype(np.float64)
        w_np = np.where(counts > 0, counts.sum() / ((counts > 0).sum() * np.maximum(counts, 1)), 0)
        weight = torch.from_numpy(w_np.astype(np.float32))
    gen = torch.Generator().manual_seed(args.seed)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    x_val, y_val = data["val"]
    best = {"key": -math.inf, "epoch": None, "state": None}
    history, kept = [], []
    for epoch in range(args.epochs):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        loss_sum = 0.0
        for i in range(0, n, args.batch_size):
            idx = order[i:i + args.batch_size]
            xb, yb = xt[idx], yt[idx]
            if args.augment:
                theta = affine_theta(*draw(gen, xb.shape[0], h, w, args), h, w).to(xb.dtype)
                xb = augment(xb, theta, args.fill, args.interpolation)
            xb = (xb - mean) / std
            loss = loss_fn(model(xb), yb, weight, args.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss = loss.detach()
            loss_sum += loss.item() * yb.shape[0]
        if epoch + 1 > args.epochs - args.average_last:
            kept.append(copy.deepcopy(model.state_dict()))
        probs = scores(model, x_val, mean, std, args.tta)
        val_auc = auc(y_val == 1, probs[:, 1])
        val_loss = float(-np.log(np.maximum(probs[np.arange(y_val.size), y_val], 1e-300)).mean())
        if sched is not None:
            sched.step()
        key = val_auc if math.isfinite(val_auc) else -val_loss  # as minicnn keeps its best
        if key > best["key"]:
            best = {"key": key, "epoch": epoch + 1, "state": copy.deepcopy(model.state_dict())}
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / n, "val_auc": val_auc,
                        "val_loss": val_loss, "seconds": time.perf_counter() - t0})
        print(f"epoch {epoch + 1}: train loss {loss_sum / n:.4f} | val AUC {val_auc:.4f} | "
              f"{history[-1]['seconds']:.1f}s", file=sys.stderr, flush=True)
    if kept:
        average_of(kept, model, xt, mean, std, args.batch_size)
        best["epoch"] = args.epochs
    else:
        model.load_state_dict(best["state"])
    x_test, y_test = data["test"]
    probs = scores(model, x_test, mean, std, args.tta)
    result = {"test_accuracy": float((probs.argmax(axis=1) == y_test).mean()),
              "test_auc": auc(y_test == 1, probs[:, 1]), "best_epoch": best["epoch"],
              "epochs": history, "torch": torch.__version__,
              "torch_threads": torch.get_num_threads(),
              "seconds": time.perf_counter() - t_start}
    for key in ("test_accuracy", "test_auc"):  # JSON has no NaN: one class missing -> null
        if not math.isfinite(result[key]):
            result[key] = None
    for record in history:
        record["val_auc"] = record["val_auc"] if math.isfinite(record["val_auc"]) else None
    print(json.dumps(result, allow_nan=False))
    return 0


def parser():
    p = argparse.ArgumentParser(prog="python -m minicnn.cli.bench.torch_job",
                                description="minicnn train's job in PyTorch (for minicnn bench "
                                            "--job); every setting is given")
    a = p.add_argument
    a("--data", required=True, help="a MedMNIST .npz (train/val/test _images, _labels)")
    a("--epochs", type=int, required=True)
    a("--model", required=True, choices=("chestxray", "chestxray_bn"))
    a("--batch-size", type=int, required=True)
    a("--optimizer", required=True, choices=("adam", "sgd"))
    a("--lr", type=float, required=True)
    a("--momentum", type=float, default=0.9, help="SGD only")
    a("--weight-decay", type=float, required=True)
    a("--schedule", required=True, choices=("cosine", "none"))
    a("--balance", required=True, choices=("none", "weights"))
    a("--label-smoothing", type=float, required=True)
    a("--dropout", type=float, required=True)
    a("--seed", type=int, required=True)
    a("--average-last", type=int, default=0, help="keep the mean of the last K epochs' weights")
    a("--tta", default="none", choices=("none", "flip"))
    a("--no-augment", dest="augment", action="store_false")
    a("--degrees", type=float, nargs=2, default=(0.0, 0.0), metavar=("LO", "HI"))
    a("--translate", type=float, default=0.0, help="shift up to this fraction of each side")
    a("--translate-pixels", type=float, nargs=2, metavar=("A", "B"),
      help="torchvision's form: whole pixels up to A * width, B * height")
    a("--scale", type=float, nargs=2, metavar=("LO", "HI"))
    a("--flip", type=float, default=0.0, help="probability of a left-right mirror")
    a("--fill", default="edge", help='"edge" or a number')
    a("--interpolation", default="bilinear", choices=("bilinear", "nearest"))
    return p


def main(argv=None):
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
