"""Write the lessons as Jupyter notebooks: `python -m minicnn.notebooks --out DIR`.

Every lesson (lessons/NN_name.py) is a Python script in jupytext's "percent" format:
`# %%` opens a code cell, `# %% [markdown]` a text cell. This command turns each into
NN_name.ipynb with jupytext, with the Python 3 kernel named, so a lone notebook opens
and runs anywhere minicnn is installed (what the lessons share lives in the package,
minicnn.lesson). In a notebook, quick mode is the environment variable MINICNN_QUICK=1
(set it before starting Jupyter, or run `%env MINICNN_QUICK=1` in the first cell).

    python -m minicnn.notebooks --out notebooks            every lesson
    python -m minicnn.notebooks --out notebooks 03 11      some of them
    python -m minicnn.notebooks --out nb --lessons PATH    lessons from another folder
    python -m minicnn.notebooks --out nb --execute --quick run them too (in a Jupyter
                                                           kernel, in quick mode), saving
                                                           the outputs into the notebooks

Needs the `lessons` extra: pip install -e ".[lessons]" (jupytext, nbclient, ipykernel).
"""
import argparse
import os
import sys
from pathlib import Path

from .errors import UserError

DEFAULT_LESSONS = "lessons"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def find_lessons(folder=None):
    """The folder that holds NN_name.py lessons: the one given, ./lessons, or the
    checkout beside an editable install; else a UserError saying where to look."""
    candidates = [Path(folder)] if folder is not None else \
        [Path(DEFAULT_LESSONS), Path(__file__).resolve().parent.parent / DEFAULT_LESSONS]
    for path in candidates:
        if path.is_dir() and any(path.glob("[0-9][0-9]_*.py")):
            return path
    raise UserError(f"notebooks: no lessons (files like 01_convolution.py) in {candidates[0]}; "
                    "run from the root of a minicnn checkout or point --lessons at its "
                    "lessons/ folder")


def lesson_files(folder, wanted=()):
    """The lesson scripts in folder, in order; `wanted` picks by number ('3', '03') or name."""
    files = sorted(Path(folder).glob("[0-9][0-9]_*.py"))
    if not wanted:
        return files
    picked = []
    for key in wanted:
        key = key.strip().removesuffix(".py")
        key = f"{int(key):02d}" if key.isdigit() else key
        found = [f for f in files if f.stem == key or f.stem[:2] == key or key in f.stem]
        if not found:
            raise UserError(f"notebooks: no lesson {key!r} in {folder}; choose from: "
                            + ", ".join(f.stem for f in files))
        picked += [f for f in found if f not in picked]
    return picked


def to_notebook(path):
    """One lesson script -> a nbformat notebook (not executed)."""
    try:
        import jupytext
    except ImportError:
        raise UserError('notebooks: jupytext is not installed; pip install -e ".[lessons]" '
                        "(or pip install jupytext nbclient ipykernel)") from None
    notebook = jupytext.read(str(path), fmt="py:percent")
    notebook.metadata["kernelspec"] = dict(KERNELSPEC)
    notebook.metadata.setdefault("language_info", {"name": "python"})
    notebook.metadata.pop("jupytext", None)          # a plain notebook, not a paired one
    return notebook


def write_notebooks(out, lessons=None, wanted=()):
    """Write out/NN_name.ipynb for each lesson; returns the paths written."""
    import nbformat
    folder = find_lessons(lessons)
    os.makedirs(out, exist_ok=True)
    written = []
    for path in lesson_files(folder, wanted):
        target = Path(out) / f"{path.stem}.ipynb"
        tmp = target.with_name(target.name + ".tmp")
        nbformat.write(to_notebook(path), str(tmp))
        os.replace(tmp, target)                           # never half a notebook
        written.append(target)
    return written


def execute_notebook(path, quick=False, timeout=600):
    """Run a notebook top to bottom in a fresh Python 3 Jupyter kernel (nbclient), in its
    own folder, and save it with its outputs. quick=True sets MINICNN_QUICK=1 for the
    kernel. Raises UserError naming the notebook and the failing cell's error."""
    try:
        import nbclient
        import nbformat
    except ImportError:
        raise UserError('notebooks: --execute needs nbclient and ipykernel; pip install -e '
                        '".[lessons]"') from None
    path = Path(path)
    notebook = nbformat.read(str(path), as_version=4)
    previous = os.environ.get("MINICNN_QUICK")
    if quick:
        os.environ["MINICNN_QUICK"] = "1"          # the kernel inherits this environment
    try:
        client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                         resources={"metadata": {"path": str(path.parent)}})
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        raise UserError(f"notebooks: {path} failed:\n{exc}") from None
    finally:
        if quick:
            if previous is None:
                os.environ.pop("MINICNN_QUICK", None)
            else:
                os.environ["MINICNN_QUICK"] = previous
    tmp = path.with_name(path.name + ".tmp")
    nbformat.write(notebook, str(tmp))
    os.replace(tmp, path)
    return notebook


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minicnn.notebooks",
                                     description="Write the lessons as Jupyter notebooks.")
    parser.add_argument("lesson", nargs="*", help="which lessons (numbers or names); default all")
    parser.add_argument("--out", required=True, help="folder for the .ipynb files")
    parser.add_argument("--lessons", default=None,
                        help=f"the lessons folder (default ./{DEFAULT_LESSONS})")
    parser.add_argument("--execute", action="store_true",
                        help="also run each notebook in a Jupyter kernel and save its outputs")
    parser.add_argument("--quick", action="store_true",
                        help="with --execute: quick mode (MINICNN_QUICK=1 in the kernel)")
    args = parser.parse_args(argv)
    try:
        written = write_notebooks(args.out, args.lessons, args.lesson)
        for path in written:
            print(f"wrote {path}", flush=True)
            if args.execute:
                execute_notebook(path, quick=args.quick)
                print(f"  ran it top to bottom{' in quick mode' if args.quick else ''}", flush=True)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(written)} notebooks in {args.out}; open them in Jupyter (or upload one to Colab "
          "after `pip install` of minicnn there)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
