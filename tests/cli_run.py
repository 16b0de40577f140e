"""Shared by the CLI tests: a tiny synthetic run, and the CLI run in this process."""
import contextlib
import io

from minicnn import cli

# a tiny run: 32 training images of 16x16, 4 batches an epoch
TINY = dict(synthetic_sizes={"train": 32, "val": 8, "test": 8}, image_size=16, batch_size=8,
            progress=False, log=lambda *a: None)
TINY_CLI = ["--synthetic-size", "32", "--image-size", "16", "--batch-size", "8", "--quiet"]


def run_cli(*argv):
    """(exit code, stdout, stderr) of `minicnn argv...`, run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()
