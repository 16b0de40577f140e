"""Every lesson runs top to bottom in quick mode and saves its figures: as a notebook in a
Jupyter kernel (nbclient), from a folder outside the checkout, for every lesson; and as a
plain script for a few (the notebook run covers the rest of what a script run would)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ROOT / "lessons"

# lesson -> the figures it must save (lessons written elsewhere may add to this table)
FIGURES = {
    "01_convolution": ["conv_timings.png", "sobel_edges.png"],
    "02_activations": ["activations.png", "relu_feature_map.png"],
    "03_pooling": ["pooling_levels.png"],
    "04_autograd": ["gradcheck_eps.png"],
    "05_architecture": ["params_and_flops.png"],
    "06_loss_and_optimisation": ["optimisers.png", "lr_schedules.png"],
    "07_data": ["samples.png", "augmentation.png", "imbalance.png"],
    "08_training": ["training_curves.png", "filters.png"],
    "09_evaluation": ["roc.png", "thresholds.png", "confusion.png"],
    "10_cuda_kernels": ["index_maps.png"],
    "11_looking_inside": ["feature_maps_stage1.png", "feature_maps_stage3.png", "gradcam.png",
                          "occlusion.png"],
    "12_making_it_fast": ["ladder.png"],
}


ON_DISK = sorted(p.stem for p in LESSONS.glob("[0-9][0-9]_*.py"))
# also run as a plain script (--quick, --out, and the lesson's own options parsed from argv);
# every lesson runs as a notebook below, so one script run is enough
SCRIPT_RUNS = ["08_training"]


def test_every_lesson_is_listed():
    listed = [name for name in ON_DISK if name in FIGURES]
    assert listed == sorted(FIGURES), "a lesson in the table is missing from lessons/"
    assert len(ON_DISK) >= 11


@pytest.mark.parametrize("name", ON_DISK)
def test_lesson_is_a_percent_notebook_that_says_what_it_teaches(name):
    text = (LESSONS / f"{name}.py").read_text()
    lines = text.splitlines()
    assert lines[0] == "# %% [markdown]", f"{name} must open with a markdown cell"
    assert re.match(rf"# # Lesson {name[:2]} ", lines[1]), lines[1]
    assert "**What this lesson teaches**" in "\n".join(lines[:6])
    assert "--quick" in text and "# %%\n" in text
    assert "sys.path" not in text, "lessons import the installed minicnn, no path hacks"


def check_figures(name, out, stdout):
    for figure in FIGURES.get(name, []):
        path = out / figure
        saved = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
        assert path.is_file(), f"{name} did not save {figure}; it saved {saved}"
        assert path.stat().st_size > 2000, f"{figure} is suspiciously small"
        relative = path.relative_to(out.parent.parent)         # as a notebook prints it
        assert f"saved figure: {path}" in stdout or f"saved figure: {relative}" in stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPT_RUNS)
def test_lesson_runs_quick_and_saves_its_figures(name, tmp_path):
    out = tmp_path / name
    done = subprocess.run([sys.executable, str(LESSONS / f"{name}.py"), "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, MPLBACKEND="Agg"))
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    check_figures(name, out, done.stdout)


def test_notebooks_command_writes_one_notebook_per_lesson(tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="needs the lessons extra (jupytext)")
    pytest.importorskip("jupytext", reason="needs the lessons extra (jupytext)")
    from minicnn import notebooks
    assert notebooks.main(["--out", str(tmp_path), "--lessons", str(LESSONS)]) == 0
    written = sorted(p.stem for p in tmp_path.glob("*.ipynb"))
    assert written == ON_DISK
    nb = nbformat.read(str(tmp_path / "03_pooling.ipynb"), as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# Lesson 03")
    assert any(c.cell_type == "code" and "from minicnn.lesson import" in c.source for c in nb.cells)
    assert notebooks.main(["--out", str(tmp_path), "--lessons", str(tmp_path / "none")]) == 2


def _outputs_text(nb):
    text = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                text.append(output.get("text", ""))
    return "".join(text)


@pytest.mark.slow
@pytest.mark.parametrize("name", ON_DISK)
def test_lesson_runs_as_a_notebook_from_any_folder(name, tmp_path, monkeypatch):
    """The lesson as a .ipynb, alone in a temporary folder, executed in a Jupyter kernel
    with MINICNN_QUICK=1: what a student gets from `python -m minicnn.notebooks` or Colab."""
    pytest.importorskip("jupytext", reason="needs the lessons extra: pip install -e '.[lessons]'")
    pytest.importorskip("nbclient", reason="needs the lessons extra")
    pytest.importorskip("ipykernel", reason="needs the lessons extra")
    from minicnn import notebooks
    from minicnn.errors import UserError
    folder = tmp_path / "student"
    folder.mkdir()
    (path,) = notebooks.write_notebooks(folder, LESSONS, [name])
    monkeypatch.delenv("MINICNN_QUICK", raising=False)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.chdir(folder)
    try:
        nb = notebooks.execute_notebook(path, quick=True, timeout=300)   # MINICNN_QUICK=1
    except UserError as exc:
        pytest.fail(str(exc)[-3000:])
    assert "MINICNN_QUICK" not in os.environ, "execute_notebook must put the environment back"
    stdout = _outputs_text(nb)
    assert f"[{name}] quick mode" in stdout, stdout[:500]
    out = folder / "lesson_out" / name
    check_figures(name, out, stdout)

