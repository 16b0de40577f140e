"""A PyTorch-tutorial chest X-ray script runs on minicnn with only its imports changed.

tests/port/chest_xray_tutorial.py is plain PyTorch + torchvision: ImageFolder with
transforms, DataLoader, an nn.Module with super().__init__(), F.relu, x.view(-1, n),
nn.CrossEntropyLoss, optim.Adam with a StepLR, loss.item(), torch.no_grad(),
torch.max(outputs.data, 1), labels.size(0), (predicted == labels).sum().item(). The
test swaps its import lines for minicnn's, checks nothing else changed, and runs it
on image files on disk: real PneumoniaMNIST X-rays when ../shared/data holds the
file, else minicnn's synthetic ones.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).parent / "port" / "chest_xray_tutorial.py"
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pneumoniamnist.npz"
IMPORTS = {
    "import torch\n": "import minicnn as torch\n",
    "import torch.nn as nn\n": "import minicnn.nn as nn\n",
    "import torch.nn.functional as F\n": "import minicnn.nn.functional as F\n",
    "import torch.optim as optim\n": "import minicnn.optim as optim\n",
    "from torchvision import datasets, transforms\n": "from minicnn.data import datasets, transforms\n",
}


def ported_source():
    source = SCRIPT.read_text()
    ported = source
    for theirs, ours in IMPORTS.items():
        assert source.count(theirs) == 1, theirs
        ported = ported.replace(theirs, ours)
    changed = [(a, b) for a, b in zip(source.splitlines(), ported.splitlines()) if a != b]
    assert len(changed) == len(IMPORTS) and all("import" in a for a, _ in changed)
    return ported


def write_images(root):
    """train/ and test/ folders of NORMAL and PNEUMONIA images, as JPEG and PNG files;
    returns (what they are, training images, test images)."""
    if REAL.exists():
        with np.load(REAL) as f:
            splits = {"train": (f["train_images"], f["train_labels"].ravel()),
                      "test": (f["test_images"], f["test_labels"].ravel())}
        source, per_class = "real PneumoniaMNIST X-rays", (60, 24)
    else:
        from minicnn.data.synthetic import synthetic_split
        splits = {}
        for seed, name in enumerate(("train", "test")):
            images, labels = synthetic_split(400, 40, seed=seed, split=name)
            splits[name] = ((images[:, 0] * 255).astype(np.uint8), labels)
        source, per_class = "SYNTHETIC X-rays", (150, 24)   # a subtler signal: more images
    counts = []
    for (name, (images, labels)), n in zip(splits.items(), per_class):
        counts.append(0)
        for label, cls in enumerate(("NORMAL", "PNEUMONIA")):
            folder = root / name / cls
            folder.mkdir(parents=True)
            for k, i in enumerate(np.flatnonzero(labels == label)[:n]):
                suffix = ".jpeg" if k % 2 else ".png"
                Image.fromarray(images[i]).resize((40, 40)).save(folder / f"{cls}_{i}{suffix}")
                counts[-1] += 1
    return source, counts[0], counts[1]


@pytest.mark.slow
def test_a_pytorch_tutorial_script_runs_with_only_its_imports_changed(tmp_path):
    ported = tmp_path / "ported.py"
    ported.write_text(ported_source())
    source, n_train, n_test = write_images(tmp_path / "data")
    proc = subprocess.run([sys.executable, str(ported), str(tmp_path / "data"), "5"],
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "classes: ['NORMAL', 'PNEUMONIA']" in out
    assert f"{n_train} training images, {n_test} test images" in out
    losses = [float(line.split("loss: ")[1].split(",")[0]) for line in out.splitlines()
              if line.startswith("[epoch")]
    assert len(losses) == 5 and losses[-1] < losses[0], out
    accuracy = float(out.split("test images: ")[1].split(" %")[0])
    assert accuracy > 65.0, f"on {source}: {out}"
