"""`minicnn predict`: the probability of pneumonia for each chest X-ray file given.

    minicnn predict --checkpoint runs/pneumoniamnist/best.npz xray1.jpeg xray2.png scan.dcm

Each image (PNG, JPEG, 16-bit, DICOM; any size) is prepared as the training images
were: converted to the network's channels, cropped to its centred square, resized to
the network's input size, normalised with the saved mean and std.

A multi-label network (ChestX-ray14's findings) lists, for each image, every finding
whose probability reaches that finding's own threshold (chosen on validation).
"""
import json
import os

import numpy as np

from minicnn.xray.checkpoint import load_checkpoint
from minicnn.data.datasets import frame
from minicnn.data.images import read_frames, read_image
from minicnn.errors import UserError
from minicnn.xray import viz
from minicnn.xray.gradcam import grad_cam
from minicnn.xray.runlock import RunLock
from minicnn.xray.train import normalise, predict, predict_multilabel


def add_arguments(parser):
    a = parser.add_argument
    a("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, DICOM, ...)")
    a("--checkpoint", required=True, help="a .npz written by minicnn train (best.npz)")
    a("--device", choices=["cpu", "cuda", "cuda-sim"], default="cpu")
    a("--gradcam", metavar="DIR", help="also write a Grad-CAM heat map per image into DIR")
    a("--json", action="store_true", help="print one JSON object per image")
    a("--frames", choices=["refuse", "each"], default="refuse", help="a multi-frame DICOM "
      "file (a series, a cine loop): refuse it, naming its frame count (default), or score "
      "each frame as its own image, named FILE[frame K]")


def prepare(path, ck):
    """One file -> float32 (C, H, W) in [0, 1], framed and sized for the checkpoint."""
    image = read_image(path, ck.channels)
    return frame(image, ck.image_size[0], min_size=min(ck.min_input_size, ck.image_size[0]),
                 source=path)


def _read_all(paths, ck, frames="refuse"):
    """(images, their paths, failures): every file tried, whatever goes wrong with one.
    frames="each": every frame of a multi-frame file, named "path[frame k]"."""
    images, ok, failures = [], [], []
    for path in paths:
        try:
            if frames == "each":
                planes = read_frames(path, ck.channels)
                size, least = ck.image_size[0], min(ck.min_input_size, ck.image_size[0])
                images += [frame(p, size, min_size=least, source=path) for p in planes]
                ok += [path] if len(planes) == 1 else \
                    [f"{path}[frame {k}]" for k in range(len(planes))]
                continue
            images.append(prepare(path, ck))
            ok.append(path)
        except UserError as err:
            failures.append(str(err))
        except Exception as err:  # a reader's own fault: name the file, go on with the rest
            failures.append(f"{path}: could not be read ({type(err).__name__}: {err})")
    return images, ok, failures


def run(args):
    ck = load_checkpoint(args.checkpoint)
    model = ck.build_model(args.device)
    if ck.multilabel:
        return _run_multilabel(args, ck, model)
    pos = ck.positive_class
    name = ck.classes[pos]
    images, paths, failures = _read_all(args.images, ck, args.frames)
    results, scored, probs = [], [], None
    if images:
        batch = np.stack(images)
        probs, _ = predict(model, normalise(batch, ck.norm_mean, ck.norm_std), device=args.device,
                           tta=ck.tta)
        for k, (path, p) in enumerate(zip(paths, probs)):
            if not np.isfinite(p).all():  # never print "nan NORMAL"
                failures.append(f"{path}: the network's output is NaN or infinite for this image")
                continue
            if len(ck.classes) == 2:
                label = ck.classes[pos] if p[pos] >= ck.threshold else ck.classes[1 - pos]
            else:
                label = ck.classes[int(p.argmax())]
            results.append({"image": path, f"p_{name.lower()}": float(p[pos]),
                            "prediction": label, "threshold": ck.threshold})
            scored.append(k)
        probs = probs[scored]
    if not args.json and results:
        width = max(len(r["image"]) for r in results)
        print(f"{'image':<{width}}  P({name})  prediction (threshold {ck.threshold:.3f}, "
              "chosen on validation)")
        for r in results:
            print(f"{r['image']:<{width}}  {r[f'p_{name.lower()}']:>{len(name) + 3}.3f}  "
                  f"{r['prediction']}")
    elif results:
        for r in results:
            print(json.dumps(r))
    return _finish(args, ck, model, _gradcam, images, paths, scored, probs,
                   results, failures)


def _run_multilabel(args, ck, model):
    images, paths, failures = _read_all(args.images, ck, args.frames)
    results, scored, probs = [], [], None
    if images:
        probs, _ = predict_multilabel(model, np.stack(images), ck.norm_mean, ck.norm_std,
                                      device=args.device, tta=ck.tta)
        for k, (path, p) in enumerate(zip(paths, probs)):
            if not np.isfinite(p).all():
                failures.append(f"{path}: the network's output is NaN or infinite for this image")
                continue
            found = [(ck.classes[j], float(p[j]), float(ck.thresholds[j]))
                     for j in np.argsort(-p, kind="stable") if p[j] >= ck.thresholds[j]]
            results.append({"image": path, "findings": [
                {"finding": f, "probability": q, "threshold": t} for f, q, t in found],
                "probabilities": dict(zip(ck.classes, map(float, p)))})
            scored.append(k)
        probs = probs[scored]
    for r in results:
        if args.json:
            print(json.dumps(r))
            continue
        listed = ", ".join(f"{f['finding']} {f['probability']:.3f} (threshold "
                           f"{f['threshold']:.3f})" for f in r["findings"])
        print(f"{r['image']}: {listed or 'no finding above its threshold'}")
    return _finish(args, ck, model, _gradcam_multilabel, images, paths, scored,
                   probs, results, failures)


def _finish(args, ck, model, gradcam, images, paths, scored, probs, results, failures):
    """What both kinds of prediction end with: the heat maps of the scored images (their
    folder locked while written), the disclaimer, and one error naming every file not used.
    probs: the scored images' probabilities, as printed (the figures say the same)."""
    if args.gradcam and scored:
        try:
            with RunLock(args.gradcam, "--gradcam"):
                failures += gradcam(args, ck, model, np.stack([images[k] for k in scored]),
                                    [paths[k] for k in scored], probs)
        except UserError as err:  # the scores above stand; say why the heat maps do not
            failures.append(str(err))
    if results and not args.json:
        print("minicnn is for learning and research; it is not a medical device.")
    if failures:
        raise UserError(f"scored {len(results)} of {len(args.images)} image(s); could not use "
                        + ("these" if len(failures) > 1 else "this one") + ":\n  "
                        + "\n  ".join(failures))
    return 0


def _gradcam_multilabel(args, ck, model, batch, paths, probs):
    """One figure per image: Grad-CAM of its most probable finding."""
    top = probs.argmax(axis=1)
    cams, _ = grad_cam(model, normalise(batch, ck.norm_mean, ck.norm_std), top,
                       device=args.device, multilabel=True)
    return _write_figures(args, paths, lambda k, target: viz.finding_gradcam_grid(
        batch[k:k + 1], cams[k:k + 1], [ck.classes[top[k]]], [probs[k, top[k]]], target,
        title=f"{os.path.basename(paths[k])}: Grad-CAM for {ck.classes[top[k]]}"))


def _write_figures(args, paths, draw):
    """draw(k, target) for each image k into --gradcam as <stem>_gradcam.png; -> one line
    per figure that could not be written (the others still are)."""
    failures = []
    for k, path in enumerate(paths):
        target = os.path.join(args.gradcam, f"{_stem(path)}_gradcam.png")
        try:
            draw(k, target)
        except OSError as err:
            failures.append(f"{target}: could not write the Grad-CAM figure "
                            f"({err.strerror or err})")
            continue
        print(f"Grad-CAM: {target}")
    return failures


def _stem(name):
    """The figure name of an input: "scan" for scan.dcm, "cine_frame3" for cine.dcm[frame 3]."""
    if name.endswith("]") and "[frame " in name:
        path, k = name[:-1].rsplit("[frame ", 1)
        return f"{os.path.splitext(os.path.basename(path))[0]}_frame{k}"
    return os.path.splitext(os.path.basename(name))[0]


def _gradcam(args, ck, model, batch, paths, probs):
    """One figure per image: Grad-CAM of the positive class, titled with the prediction."""
    cams, _ = grad_cam(model, normalise(batch, ck.norm_mean, ck.norm_std), ck.positive_class,
                       device=args.device)

    def label(k):
        if len(ck.classes) == 2:
            positive = probs[k, ck.positive_class] >= ck.threshold
            return ck.positive_class if positive else 1 - ck.positive_class
        return int(probs[k].argmax())
    return _write_figures(args, paths, lambda k, target: viz.gradcam_grid(
        batch[k:k + 1], cams[k:k + 1], [label(k)], probs[k:k + 1, ck.positive_class],
        ck.classes, ck.positive_class, target,
        title=f"{os.path.basename(paths[k])}: predicted {ck.classes[label(k)]}"))
