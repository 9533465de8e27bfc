"""The course notebooks: committed clean and well-formed, and each one runs in the quick profile.

Notebooks are found at collection time, so a new ``notebooks/NN_topic.ipynb`` gets its tests
automatically (with none yet, the parametrized tests are reported as skipped, not as errors).
The structural checks also cover the fixture notebooks in ``tests/notebooks`` (and its subfolders).
Executed copies go to ``runs/test/`` (git-ignored) for inspection after a failure. The quick runs use
isolated data (``REGKIT_DATA_ISOLATED=1``): the embedded subset and generated data only.
"""

import ast
from pathlib import Path

import nbformat
import pytest

from regkit.course.notebook import NOTEBOOK_NAME, CourseNotebook
from regkit.course.recording import read_results
from regkit.course.runner import NOTEBOOKS_DIR, RUNS_DIR, load_manifest, run_course

FIXTURES = Path(__file__).parent / "notebooks"
COURSE = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
ALL = COURSE + sorted(FIXTURES.rglob("*.ipynb"))


def ids(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


@pytest.mark.parametrize("path", ALL, ids=ids)
def test_notebook_is_committed_clean_and_well_formed(path):
    assert NOTEBOOK_NAME.match(path.name), f"{path.name}: notebooks are named NN_topic.ipynb (the runner skips others)"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernelspec must be python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code):
        assert cell.outputs == [] and cell.execution_count is None, (
            f"{path.name}: code cell {i} has outputs or an execution count; run nbstripout --keep-id"
        )
    assert code and "parameters" in code[0].metadata.get("tags", []), f"{path.name}: first code cell must be tagged parameters"
    statements = ast.parse(code[0].source).body
    names = set()
    for stmt in statements:
        assert isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None, (
            f"{path.name}: the parameters cell may hold only assignments, line {stmt.lineno}"
        )
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        assert all(isinstance(t, ast.Name) for t in targets), f"{path.name}: line {stmt.lineno} assigns to a non-name"
        ast.literal_eval(stmt.value)  # raises on anything but a literal
        names.update(t.id for t in targets)
    assert "profile" in names, f"{path.name}: the parameters cell must define profile = \"quick\""
    assert set(CourseNotebook(path).parameters()) == names  # papermill sees exactly these


def private_uses(*cells: str) -> list[str]:
    """The private regkit names that code cells use: ``regkit.a._b`` imports, ``from regkit.a import _b``, and
    ``m._b`` where ``m`` is bound by a regkit import in any of the cells."""
    found, bound = [], set()
    trees = [ast.parse(source) for source in cells]
    for node in (node for tree in trees for node in ast.walk(tree)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "regkit":
                    found += [alias.name] if any(p.startswith("_") for p in alias.name.split(".")) else []
                    bound.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "regkit":
            found += [node.module] if any(p.startswith("_") for p in node.module.split(".")) else []
            found += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            bound.update(a.asname or a.name for a in node.names)
    for node in (node for tree in trees for node in ast.walk(tree)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_private_uses_finds_private_modules_and_names():
    assert private_uses("from regkit.optim._functional import add_l2") == ["regkit.optim._functional"]
    assert private_uses("import regkit.bench._timing as t") == ["regkit.bench._timing"]
    assert private_uses("from regkit.optim import _functional") == ["regkit.optim._functional"]
    assert private_uses("import regkit.penalties.microbatch as mb", "mb._penalty_output") == ["mb._penalty_output"]
    assert private_uses("from regkit.optim import functional\nfunctional.add_l2\nimport numpy as np\nnp._x") == []


@pytest.mark.parametrize("path", COURSE, ids=ids)
def test_notebook_shows_only_public_regkit_api(path):
    nb = nbformat.read(path, as_version=4)
    used = private_uses(*(cell.source for cell in nb.cells if cell.cell_type == "code"))
    assert not used, f"{path.name} uses private regkit names {used}: expose them publicly (a notebook shows public API)"


@pytest.mark.notebook
@pytest.mark.parametrize("path", COURSE, ids=ids)
def test_notebook_runs_in_the_quick_profile(path, monkeypatch):
    # isolated data (no Debian package, no network): a hidden dependency on either fails here, in CI
    monkeypatch.setenv("REGKIT_DATA_ISOLATED", "1")
    out = RUNS_DIR / "test"
    run = run_course("quick", only=[path.stem], out_dir=out)
    if run.failed:
        entry = load_manifest(out)["notebooks"][path.stem]
        pytest.fail(f"{run.failed[0].message}\n{entry['traceback']}\nexecuted copy: {out / path.name}")
    assert read_results(out / f"{path.stem}.results.json"), f"{path.name} recorded no result; record its key numbers with regkit.course.record"
