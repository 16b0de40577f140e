"""What every lesson script shares: its command line, where figures go, a stopwatch.

It lives in the installed package (not beside the lessons) so that a lesson opened
alone as a notebook, from any folder or uploaded to Colab, still finds it.

Each lesson runs as `python lessons/NN_name.py [--quick] [--out FOLDER]`:
  --quick   small sizes and few steps, so the lesson finishes in seconds (the
            environment variable MINICNN_QUICK=1 does the same, for notebooks)
  --out     where figures are saved (default ./lesson_out/NN_name)
In Jupyter or VS Code the same file opens as a notebook; there the figures show
inline as well as being saved.
"""
import argparse
import os
import re
import sys
import time
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:      # a script: draw off-screen, save to files
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

import minicnn.kernels  # noqa: E402
from minicnn.data.synthetic import synthetic_split  # noqa: E402
from minicnn.xray.train import fit  # noqa: E402


def setup(name, description, add_options=None, data=False, train=False, compiles=False):
    """Parse the lesson's options; returns (args, out_folder) and makes the folder.

    name: the lesson's file stem ("01_convolution"); add_options(parser) adds extras;
    data=True adds --data (the data set: "synthetic" or a MedMNIST .npz file);
    train=True adds --epochs, for lessons that train a network with train_classifier();
    compiles=True warns that the first run compiles numba kernels (lessons that call
    the CPU kernels early, so a pause there is not taken for a hang).
    """
    parser = argparse.ArgumentParser(prog=f"python lessons/{name}.py", description=description)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, few steps: finishes in seconds")
    parser.add_argument("--out", default=os.path.join("lesson_out", name),
                        help=f"folder for the figures (default ./lesson_out/{name})")
    if data:
        parser.add_argument("--data", default="synthetic",
                            help="'synthetic' (default: minicnn's generated X-rays) or a MedMNIST "
                                 ".npz file such as pneumoniamnist.npz")
    if train:
        parser.add_argument("--epochs", type=int, default=None,
                            help="training epochs (default 1 with --quick, 4 without)")
    if add_options is not None:
        add_options(parser)
    # parse_known_args: a notebook kernel passes its own arguments (-f kernel.json)
    args, _ = parser.parse_known_args()
    args.quick = args.quick or os.environ.get("MINICNN_QUICK", "") not in ("", "0")
    os.makedirs(args.out, exist_ok=True)
    print(f"[{name}] {'quick mode, ' if args.quick else ''}figures go to {args.out}/")
    if compiles:
        print(COMPILE_NOTE)
    return args, args.out


COMPILE_NOTE = ("note: the first run on this machine compiles minicnn's numba kernels, which "
                "takes 10-20 s; numba caches them, so later runs start at once")


def save(fig, out, filename):
    """Save a figure as out/filename, say so, and close it (or show it in a notebook)."""
    path = os.path.join(out, filename)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"saved figure: {path}")
    if "ipykernel" in sys.modules:
        plt.show()
    plt.close(fig)
    return path


def train_classifier(args, out):
    """A ChestXrayCNN trained by minicnn.xray.train.fit, the recipe of `minicnn train`.

    28 x 28 images from args.data, class-weighted loss, the best epoch by validation
    AUC; small and short with --quick. Returns fit's result: .model, .splits,
    .val_probs, .test_probs, .positive, .mean, .std. The run's files go to out/run.
    """
    result = fit(data=args.data, epochs=args.epochs or (1 if args.quick else 4), image_size=28,
                 synthetic_sizes={"train": 128, "val": 64, "test": 64} if args.quick else None,
                 batch_size=32 if args.quick else 64, balance="weights",
                 out=os.path.join(out, "run"), progress=False)
    if args.quick:
        print("quick mode: the network has barely trained; run without --quick for real results")
    return result


def saved(path):
    """Announce a figure that minicnn.xray.viz wrote (and show it in a notebook)."""
    print(f"saved figure: {path}")
    if "ipykernel" in sys.modules:
        from IPython.display import Image, display
        display(Image(filename=path))
    return path


def best_time(fn, *args, repeat=3):
    """The fastest of `repeat` runs of fn(*args), in seconds (the least disturbed run)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - start)
    return best


def medical_image(size=None):
    """A real medical picture when one is installed, else the project's synthetic X-ray.

    Returns (image (H, W) float32 scaled to [0, 1], a sentence saying what it is).
    Uses pydicom's bundled CT slice (pip install pydicom) when available.
    """
    try:
        import pydicom
        from pydicom.data import get_testdata_file
        path = get_testdata_file("CT_small.dcm")
        image = pydicom.dcmread(path).pixel_array.astype(np.float32)
        what = "a real CT slice (pydicom's bundled test file CT_small.dcm, 128x128)"
    except Exception:
        images, _ = synthetic_split(1, size or 128, seed=0)
        image = images[0, 0]
        what = "a SYNTHETIC chest X-ray from minicnn's generator (pydicom is not installed)"
    lo, hi = float(image.min()), float(image.max())
    return (image - lo) / max(hi - lo, 1e-12), what


def kernel_lines(relpath, *names):
    """Where minicnn's kernels hold a computation, looked up in the installed files now
    (so a lesson's pointer cannot go stale): one line per name, "kernels/FILE:LINE  name".

    relpath: a file under kernels/ ("cpu/pool.py", "cuda/pool.cu"); each name is a
    function (found as `def name` or ` name(` in a CUDA signature) or any text in the
    file (its first line holding it). Raises LookupError for a name not found.
    """
    path = Path(minicnn.kernels.__file__).parent / relpath
    lines = path.read_text().splitlines()
    found = []
    for name in names:
        patterns = [rf"^\s*def {re.escape(name)}\(", rf"__global__ void {re.escape(name)}\("] \
            if name.isidentifier() else []
        number = next((k for pattern in patterns for k, line in enumerate(lines, 1)
                       if re.search(pattern, line)), None)
        if number is None:
            number = next((k for k, line in enumerate(lines, 1) if name in line), None)
        if number is None:
            raise LookupError(f"{name!r} is not in kernels/{relpath} any more: the lesson "
                              "needs updating")
        shown = name if name.isidentifier() else lines[number - 1].strip()
        found.append(f"kernels/{relpath}:{number}  {shown}")
    return found


def show_kernels(*entries):
    """Print kernel_lines for each (relpath, name, ...) entry."""
    for relpath, *names in entries:
        for line in kernel_lines(relpath, *names):
            print("  " + line)
