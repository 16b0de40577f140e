"""The exercise grader: solutions pass, untouched stubs fail with a helpful message,
and a wrong answer is reported at its first wrong element."""
import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minicnn.cli import grade
from minicnn.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
EXERCISES = ROOT / "lessons" / "exercises"
NAMES = list(grade.EXERCISES)


def run_grader(capsys, *argv):
    parser = argparse.ArgumentParser()
    grade.add_arguments(parser)
    code = grade.run(parser.parse_args([str(a) for a in argv]))
    return code, capsys.readouterr().out


def line_of(output, name):
    """The grader's output line for one exercise."""
    lines = [ln for ln in output.splitlines() if re.match(rf"(PASS|FAIL)\s+{name}\s", ln)]
    assert len(lines) == 1, f"expected one line for {name} in:\n{output}"
    return lines[0]


def test_ten_exercises_each_with_a_solution():
    assert len(NAMES) == 10
    for name in NAMES:
        assert (EXERCISES / f"{name}.py").is_file(), name
        assert (EXERCISES / "solutions" / f"{name}.py").is_file(), name
    on_disk = sorted(p.stem for p in EXERCISES.glob("[0-9][0-9]_*.py"))
    assert on_disk == sorted(NAMES)


@pytest.mark.parametrize("seed", [0, 1])
def test_every_solution_passes(capsys, seed):
    code, out = run_grader(capsys, "--solutions", "--dir", EXERCISES, "--seed", seed)
    for name in NAMES:
        assert line_of(out, name).startswith("PASS"), out
    assert "10 of 10 passed" in out
    assert code == 0


@pytest.mark.parametrize("name", NAMES)
def test_untouched_stub_fails_as_not_started(capsys, name):
    code, out = run_grader(capsys, name, "--dir", EXERCISES)
    line = line_of(out, name)
    assert line.startswith("FAIL"), line
    assert "not started: fill in the TODO in " in line
    assert re.search(rf"lessons[/\\]exercises[/\\]{name}\.py", line), line
    assert "still raises NotImplementedError" in line
    assert code == 1


@pytest.fixture
def broken(tmp_path):
    """A copy of the solutions to break one at a time; returns (folder, edit)."""
    folder = tmp_path / "exercises"
    shutil.copytree(EXERCISES / "solutions", folder)

    def edit(name, old, new):
        path = folder / f"{name}.py"
        text = path.read_text()
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new, 1))
    return folder, edit


def parse_hint(line):
    m = re.search(r"(\w+) is wrong at index \(([\d, ]+)\): expected (\S+), got (\S+?)[;( ]", line)
    assert m, f"no 'NAME is wrong at index (...): expected X, got Y' in: {line}"
    index = tuple(int(v) for v in m.group(2).split(",") if v.strip())
    return m.group(1), index, float(m.group(3)), float(m.group(4))


def test_wrong_conv_names_the_first_wrong_element(capsys, broken):
    folder, edit = broken
    # add 1 to output row 1, column 2 only: the first wrong element is (0, 0, 1, 2)
    edit("01_conv_forward", "y[n, f, i, j] = total", "y[n, f, i, j] = total + ((i, j) == (1, 2))")
    code, out = run_grader(capsys, "01", "--dir", folder)
    line = line_of(out, "01_conv_forward")
    assert line.startswith("FAIL") and code == 1
    name, index, expected, got = parse_hint(line)
    assert (name, index) == ("y", (0, 0, 1, 2))
    assert got - expected == pytest.approx(1.0, abs=1e-4)
    assert "x (1, 1, 5, 5), w (1, 1, 3, 3) (kernel 3x3), stride 1, padding 0" in line   # the case, to reproduce


def test_wrong_conv_backward_names_the_wrong_gradient(capsys, broken):
    folder, edit = broken
    edit("03_conv_backward", "gx[n, :, h, v] += g * w[f, :, p, q]", "gx[n, :, h, v] -= g * w[f, :, p, q]")
    code, out = run_grader(capsys, "conv_backward", "--dir", folder)
    name, index, expected, got = parse_hint(line_of(out, "03_conv_backward"))
    assert name == "gx" and len(index) == 4
    assert got == pytest.approx(-expected, rel=1e-4)
    assert code == 1


def test_max_pool_tie_breaking_is_checked(capsys, broken):
    folder, edit = broken
    # the LAST maximum instead of the first: only windows with ties differ
    edit("05_maxpool_backward", "first = np.argmax(window)",
         "first = window.size - 1 - np.argmax(window.ravel()[::-1])")
    code, out = run_grader(capsys, "5", "--dir", folder)
    line = line_of(out, "05_maxpool_backward")
    name, index, expected, got = parse_hint(line)
    assert name == "gx" and "with ties" in line and code == 1


def test_overflowing_softmax_is_reported_as_not_finite(capsys, broken):
    folder, edit = broken
    edit("06_softmax_cross_entropy", "shifted = logits - logits.max(axis=1, keepdims=True)",
         "shifted = logits")
    code, out = run_grader(capsys, "06", "--dir", folder)
    line = line_of(out, "06_softmax_cross_entropy")
    assert "not a finite number" in line and "did exp() overflow" in line, line
    assert code == 1


def test_wrong_shape_and_student_exception_are_explained(capsys, broken):
    folder, edit = broken
    edit("04_relu_backward", "return np.where(x > 0, gy, 0.0)", "return np.where(x > 0, gy, 0.0).ravel()")
    edit("07_sgd_momentum", "    g = g + weight_decay * p", "    g = g + weight_decay * p[999]")
    code, out = run_grader(capsys, "--dir", folder)
    assert re.search(r"gx has shape \(\d+,\) but should have shape \(2, 3, 4, 4\)",
                     line_of(out, "04_relu_backward")), out
    line = line_of(out, "07_sgd_momentum")
    assert "sgd_momentum_step() raised IndexError" in line
    assert re.search(r"\(line \d+ of .*07_sgd_momentum\.py\), on the case step 1 of 4 from the "
                     r"same start, lr 0\.1, momentum 0\.9, weight_decay 0\.0, p \(5,\)", line), line
    assert "8 of 10 passed" in out and code == 1


def test_wrong_index_map_names_the_thread(capsys, broken):
    folder, edit = broken
    edit("08_cuda_index_map", "if t >= N * C * H * W:", "if t > N * C * H * W:")
    code, out = run_grader(capsys, "08", "--dir", folder)
    line = line_of(out, "08_cuda_index_map")
    # 210 elements in blocks of 64: thread 18 of block 3 is the first idle one
    assert "thread_element(block_idx=3, block_dim=64, thread_idx=18, shape=(2, 3, 5, 7))" in line
    assert "expected None, got (2, 0, 0, 0)" in line and code == 1


def test_select_by_number_or_name():
    assert grade.select(NAMES, "3") == ["03_conv_backward"]
    assert grade.select(NAMES, "03") == ["03_conv_backward"]
    assert grade.select(NAMES, "conv_backward") == ["03_conv_backward"]
    assert grade.select(NAMES, "03_conv_backward.py") == ["03_conv_backward"]
    assert grade.select(NAMES, None) == NAMES
    with pytest.raises(UserError, match="no exercise called 'nope'; choose one of: 01_conv_forward"):
        grade.select(NAMES, "nope")


def test_missing_folder_is_a_clear_error(tmp_path):
    args = argparse.Namespace(exercise=None, solutions=False, dir=str(tmp_path / "absent"), seed=0)
    with pytest.raises(UserError, match=r"no exercises folder at .*absent.*point --dir at lessons/exercises"):
        grade.run(args)


def test_python_dash_m_from_the_checkout():
    done = subprocess.run([sys.executable, "-m", "minicnn.cli.grade", "04", "--solutions"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"PASS\s+04_relu_backward", done.stdout)
    assert "1 of 1 passed" in done.stdout


def test_python_dash_m_outside_a_checkout_says_where_to_look(tmp_path):
    done = subprocess.run([sys.executable, "-m", "minicnn.cli.grade", "--dir", "nowhere"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "no exercises folder at nowhere" in done.stderr


def test_check_close_reports_the_first_wrong_element_in_row_major_order():
    expected = np.zeros((2, 3))
    got = expected.copy()
    got[1, 2] = 5.0
    got[1, 0] = np.nan
    with pytest.raises(grade.Wrong, match=r"a is wrong at index \(1, 0\): expected 0, got nan .*"
                                          r"2 of 6 elements are wrong \(case\)"):
        grade.check_close("a", got, expected, "case")
    grade.check_close("a", expected + 1e-9, expected, "case")      # within tolerance


def test_minicnn_grade_command(capsys):
    from minicnn import cli
    code = cli.main(["grade", "04", "--solutions", "--dir", str(EXERCISES)])
    out = capsys.readouterr().out
    assert code == 0 and re.search(r"PASS\s+04_relu_backward", out), out
    code = cli.main(["grade", "04", "--dir", str(EXERCISES)])
    out = capsys.readouterr().out
    assert code == 1 and "not started: fill in the TODO" in out, out
    code = cli.main(["grade", "--dir", "/nonexistent/exercises"])
    assert code == 2 and "no exercises folder at /nonexistent/exercises" in capsys.readouterr().err


@pytest.mark.parametrize("name", NAMES)
def test_stub_and_solution_have_the_same_functions(name):
    import inspect
    stub = grade._load(EXERCISES / f"{name}.py")
    solution = grade._load(EXERCISES / "solutions" / f"{name}.py")

    def functions(module):
        return {n: str(inspect.signature(f)) for n, f in vars(module).items()
                if inspect.isfunction(f) and not n.startswith("_") and f.__module__ == module.__name__}
    assert functions(stub) == functions(solution)
    assert functions(stub), f"{name} defines no function to fill in"
    assert "TODO" in (EXERCISES / f"{name}.py").read_text()
