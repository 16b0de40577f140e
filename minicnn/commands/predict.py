"""`minicnn predict`: the probability of pneumonia for each chest X-ray file given.

    minicnn predict --checkpoint runs/pneumoniamnist/best.npz xray1.jpeg xray2.png scan.dcm

Each image (PNG, JPEG, 16-bit, DICOM; any size) is prepared as the training images
were: converted to the network's channels, cropped to its centred square, resized to
the network's input size, normalised with the saved mean and std.
"""
import json
import os

import numpy as np

from ..checkpoint import load_checkpoint
from ..data.datasets import frame
from ..data.images import read_image
from ..errors import UserError
from ..train import normalise, predict


def add_arguments(parser):
    a = parser.add_argument
    a("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, DICOM, ...)")
    a("--checkpoint", required=True, help="a .npz written by minicnn train (best.npz)")
    a("--device", choices=["cpu", "cuda", "cuda-sim"], default="cpu")
    a("--gradcam", metavar="DIR", help="also write a Grad-CAM heat map per image into DIR")
    a("--json", action="store_true", help="print one JSON object per image")


def prepare(path, ck):
    """One file -> float32 (C, H, W) in [0, 1], framed and sized for the checkpoint."""
    image = read_image(path, ck.channels)
    return frame(image, ck.image_size[0], min_size=min(ck.min_input_size, ck.image_size[0]),
                 source=path)


def run(args):
    ck = load_checkpoint(args.checkpoint)
    model = ck.build_model(args.device)
    pos = ck.positive_class
    name = ck.classes[pos]
    images, paths, failures = [], [], []
    for path in args.images:
        try:
            images.append(prepare(path, ck))
            paths.append(path)
        except UserError as err:
            failures.append(str(err))
    results = []
    if images:
        batch = np.stack(images)
        probs, _ = predict(model, normalise(batch, ck.norm_mean, ck.norm_std), device=args.device)
        for path, p in zip(paths, probs):
            if len(ck.classes) == 2:
                label = ck.classes[pos] if p[pos] >= ck.threshold else ck.classes[1 - pos]
            else:
                label = ck.classes[int(p.argmax())]
            results.append({"image": path, f"p_{name.lower()}": float(p[pos]),
                            "prediction": label, "threshold": ck.threshold})
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
    if args.gradcam and images:
        _gradcam(args, ck, model, np.stack(images), paths)
    if results and not args.json:
        print("minicnn is for learning and research; it is not a medical device.")
    if failures:
        raise UserError("could not read " + ("these images" if len(failures) > 1 else "an image")
                        + ":\n  " + "\n  ".join(failures))
    return 0


def _gradcam(args, ck, model, batch, paths):
    from ..gradcam import grad_cam
    from .. import viz
    cams, probs = grad_cam(model, normalise(batch, ck.norm_mean, ck.norm_std), ck.positive_class,
                           device=args.device)
    os.makedirs(args.gradcam, exist_ok=True)
    for k, path in enumerate(paths):
        stem = os.path.splitext(os.path.basename(path))[0]
        target = os.path.join(args.gradcam, f"{stem}_gradcam.png")
        if len(ck.classes) == 2:
            positive = probs[k, ck.positive_class] >= ck.threshold
            label = ck.positive_class if positive else 1 - ck.positive_class
        else:
            label = int(probs[k].argmax())
        viz.gradcam_grid(batch[k:k + 1], cams[k:k + 1], [label], probs[k:k + 1, ck.positive_class],
                         ck.classes, ck.positive_class, target,
                         title=f"{os.path.basename(path)}: predicted {ck.classes[label]}")
        print(f"Grad-CAM: {target}")
