"""examples/ddp_continue.py: train with minicnn, continue on 2 DDP processes (gloo), come back.

The two ranks must end with bit-identical weights (DDP averages every gradient),
the weights must have moved, and the checkpoint rank 0 writes must load and score
in minicnn.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minicnn.xray.checkpoint import load_checkpoint
from minicnn.xray.train import fit

from cli_run import TINY, run_cli

pytest.importorskip("torch", reason="the DDP example runs on PyTorch")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ddp_continue.py"


@pytest.mark.slow
def test_ddp_example_two_ranks_end_identical_and_come_back(tmp_path):
    fit(epochs=1, out=str(tmp_path / "first"), **TINY)
    first = tmp_path / "first" / "best.npz"
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(EXAMPLE), "--checkpoint", str(first), "--steps", "3", "--batch-size", "4",
         "--lr", "1e-2", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    hashes = [(out / f"rank{r}.sha256").read_text().strip() for r in (0, 1)]
    assert len(hashes[0]) == 64 and hashes[0] == hashes[1]
    before, after = load_checkpoint(first), load_checkpoint(out / "ddp.npz")
    moved = [k for k in before.weights
             if not np.array_equal(before.weights[k], after.weights[k])]
    assert moved, "three steps at lr 1e-2 changed no weight"
    code, stdout, stderr = run_cli("evaluate", "--checkpoint", out / "ddp.npz", "--no-figures",
                                   "--out", tmp_path / "eval")
    assert code == 0, stderr
    assert "accuracy" in stdout
