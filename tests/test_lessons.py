"""Every lesson runs on its own in --quick mode and saves its figures."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ROOT / "lessons"

# lesson -> the figures it must save
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
}


def test_every_lesson_is_listed():
    on_disk = sorted(p.stem for p in LESSONS.glob("[0-9][0-9]_*.py"))
    assert on_disk == sorted(FIGURES)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_lesson_is_a_percent_notebook_that_says_what_it_teaches(name):
    text = (LESSONS / f"{name}.py").read_text()
    lines = text.splitlines()
    assert lines[0] == "# %% [markdown]", f"{name} must open with a markdown cell"
    assert re.match(rf"# # Lesson {name[:2]} ", lines[1]), lines[1]
    assert "**What this lesson teaches**" in "\n".join(lines[:6])
    assert "--quick" in text and "# %%\n" in text
    assert "sys.path" not in text, "lessons import the installed minicnn, no path hacks"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FIGURES))
def test_lesson_runs_quick_and_saves_its_figures(name, tmp_path):
    out = tmp_path / name
    done = subprocess.run([sys.executable, str(LESSONS / f"{name}.py"), "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, MPLBACKEND="Agg"))
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    for figure in FIGURES[name]:
        path = out / figure
        assert path.is_file(), f"{name} did not save {figure}; it saved {sorted(p.name for p in out.iterdir())}"
        assert path.stat().st_size > 2000, f"{figure} is suspiciously small"
        assert f"saved figure: {path}" in done.stdout

