"""Self-paced exercises: checks that answer back, reference solutions, teacher copies."""

import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from regkit.course import solutions
from regkit.course.__main__ import main
from regkit.course.exercises import EXERCISES, check, judge
from regkit.course.runner import NOTEBOOKS_DIR, REPO_ROOT

COURSE = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def exercise_cells(path: Path) -> dict[str, list]:
    cells: dict[str, list] = {}
    for cell in nbformat.read(path, as_version=4).cells:
        if "exercise" in cell.metadata:
            cells.setdefault(cell.metadata["exercise"], []).append(cell)
    return cells


def test_solutions_command_runs_every_reference_solution_through_its_check():
    done = subprocess.run([sys.executable, "-m", "regkit.course", "solutions"], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == f"{len(EXERCISES)} exercises, {len(EXERCISES)} passed"


def wrong_solution():
    return 0.0


def test_a_wrong_reference_solution_fails_the_command(monkeypatch, capsys):
    monkeypatch.setattr(solutions.module("08"), "exercise_1", wrong_solution)
    assert main(["solutions", "--only", "8"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "1 exercises, 0 passed"
    assert lines[0].startswith("08.1  FAILED")


def test_unknown_notebook_is_a_clear_error(capsys):
    assert main(["solutions", "--only", "42"]) == 2
    assert "no notebook '42' has exercises; known: 00, 01" in capsys.readouterr().err


def test_check_says_not_answered_right_or_wrong_and_never_the_answer(capsys):
    assert check("08.1", None) is None
    assert capsys.readouterr().out == "Exercise 08.1: not answered yet (expects a float: the L2 coefficient for SGD + L2).\n"
    assert check("08.1", 0.05) is True
    assert capsys.readouterr().out == "Exercise 08.1: right.\n"
    assert check("08.1", 0.5) is False
    out = capsys.readouterr().out
    assert out.startswith("Exercise 08.1: not right yet") and "Hint: SGD + L2 settles" in out
    assert "0.05" not in out


def test_answers_of_the_wrong_shape_or_type_are_wrong_not_errors():
    assert judge("01.4", [1.0, 2.0, 3.0]) is False
    assert judge("01.4", "abc") is False
    assert judge("01.5", 1.0) is False  # an index is an int
    assert judge("01.5", 1) is True
    assert judge("02.5", ("layer", "channel")) is True


def test_judges_use_closed_forms():
    h, c = np.array([1.0, 0.05]), np.array([1.5, 3.0])
    assert judge("01.4", h * c / (h + 0.1))  # (1 - mu)/(1 - dampening) * wd = 0.1
    assert judge("06.1", (0.01 * 1000 / (2 - 0.01)) ** 0.5)
    assert judge("07.4", 1 - 0.1 * np.array([1.0, 2.0, 3.0]) * (1 + 0.05 * np.arange(1, 4) / 14**0.5))


def test_unknown_exercise_names_the_known_ones():
    with pytest.raises(KeyError, match=r"no computable exercise '09.1'; known: 00.3, 00.4"):
        check("09.1", 1)


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.stem)
def test_notebook_has_3_to_5_exercises_each_checked_or_discussed(path):
    cells = exercise_cells(path)
    assert 3 <= len(cells) <= 5, f"{path.name}: {len(cells)} exercises"
    for exercise_id, group in cells.items():
        assert exercise_id.startswith(path.name[:2] + ".")
        assert group[0].cell_type == "markdown" and group[0].source.startswith(f"**Exercise {exercise_id}.**")
        if exercise_id in EXERCISES:
            assert [c.cell_type for c in group] == ["markdown", "code"]
            assert group[1].source == f'answer = None  # your code here\ncheck("{exercise_id}", answer)'
        else:
            assert len(group) == 1 and solutions.discussion(exercise_id), f"{exercise_id}: no discussion"


def test_every_computable_exercise_has_a_cell_and_a_solution():
    in_notebooks = {e for path in COURSE for e, group in exercise_cells(path).items() if len(group) == 2}
    solved = {e for nb in solutions.NOTEBOOKS for e in solutions.solved(nb)}
    assert in_notebooks == solved == set(EXERCISES)


def test_build_writes_teacher_copies_with_solutions_and_discussions(tmp_path):
    assert main(["build", "--solutions", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in COURSE]
    teacher = nbformat.read(tmp_path / "01_weight_decay_l2_vs_decoupled.ipynb", as_version=4)
    code = {c.metadata["exercise"]: c.source for c in teacher.cells if c.cell_type == "code" and "exercise" in c.metadata}
    assert code["01.4"].startswith("def exercise_4():") and code["01.4"].endswith('answer = exercise_4()\ncheck("01.4", answer)')
    discussions = [c.metadata["exercise_discussion"] for c in teacher.cells if "exercise_discussion" in c.metadata]
    assert discussions == ["01.1", "01.2", "01.3"]
    student = nbformat.read(COURSE[1], as_version=4)
    assert len(teacher.cells) == len(student.cells) + 3  # the committed notebook is untouched


def test_build_refuses_to_write_into_the_notebooks_folder(capsys):
    assert main(["build", "--solutions", str(NOTEBOOKS_DIR)]) == 2
    assert "is the notebooks folder: teacher copies must go elsewhere" in capsys.readouterr().err


def test_discussion_08_2_states_the_demo_norm_ratios_it_measures():
    import numpy as np

    from regkit.course.solutions import nb08
    from regkit.widgets.scale_invariance import norm_growth

    text = nb08.DISCUSSIONS["08.2"]
    for momentum, shown in ((0.5, "1.32x"), (0.9, "5.35x"), (0.99, "32.9x")):
        curves = norm_growth(momentum=momentum)
        ratio = float(np.asarray(curves["norm"])[-1] / np.asarray(curves["gd_norm"])[-1])
        assert f"{ratio:.3g}x" == shown and shown in text
