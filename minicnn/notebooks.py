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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minicnn.notebooks",
                                     description="Write the lessons as Jupyter notebooks.")
    parser.add_argument("lesson", nargs="*", help="which lessons (numbers or names); default all")
    parser.add_argument("--out", required=True, help="folder for the .ipynb files")
    parser.add_argument("--lessons", default=None,
                        help=f"the lessons folder (default ./{DEFAULT_LESSONS})")
    args = parser.parse_args(argv)
    try:
        written = write_notebooks(args.out, args.lessons, args.lesson)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    print(f"{len(written)} notebooks; open them in Jupyter, or run one with "
          f"`jupyter nbconvert --to notebook --execute {written[0] if written else 'X.ipynb'}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
