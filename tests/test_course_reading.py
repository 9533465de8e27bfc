"""What a reader of a notebook sees: record() prints nothing, recorded() shows one table, and the
runner's executed copy carries no progress-bar residue (regkit.course.runner.tidy_executed)."""

import nbformat
import pytest

import regkit.course.recording as recording
from regkit.course import record, recorded
from regkit.course.book import INJECTED_LABEL, clean
from regkit.course.runner import tidy_executed


@pytest.fixture
def in_memory(monkeypatch):
    monkeypatch.delenv(recording.RESULTS_FILE_ENV, raising=False)
    monkeypatch.setattr(recording, "_interactive", {})


def test_recorded_is_one_table_of_every_result_with_its_unit_and_details(in_memory, capsys):
    assert list(recorded().columns) == ["result", "value", "unit", "details"] and recorded().empty
    record("overview.demo.test_acc", 81.23456789, unit="%", dataset="fashion_mnist_subset", steps=300)
    record("widgets.cpr.max_update_ms", 412, unit="ms")
    record("flag", True)
    assert capsys.readouterr().out == ""
    table = recorded()
    assert table.to_dict("records") == [
        {"result": "overview.demo.test_acc", "value": "81.2346", "unit": "%",
         "details": "dataset=fashion_mnist_subset, steps=300"},
        {"result": "widgets.cpr.max_update_ms", "value": "412", "unit": "ms", "details": ""},
        {"result": "flag", "value": "True", "unit": "", "details": ""},
    ]  # fmt: skip


def test_recorded_reads_the_runner_results_file(tmp_path, monkeypatch):
    monkeypatch.setenv(recording.RESULTS_FILE_ENV, str(tmp_path / "nb.results.json"))
    record("loss", 0.5, unit="nats")
    assert recorded().to_dict("records") == [{"result": "loss", "value": "0.5", "unit": "nats", "details": ""}]


def _executed(path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "quick"', metadata={"tags": ["parameters"]})
    injected = nbformat.v4.new_code_cell('profile = "full"', metadata={"tags": ["injected-parameters"]})
    train = nbformat.v4.new_code_cell("train()")
    train.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="00 demo:  42%|████▏     | 126/300 [00:03<00:04]\r"),
        nbformat.v4.new_output("stream", name="stderr", text="UserWarning: a real warning\n"),
        nbformat.v4.new_output("stream", name="stderr", text="\n"),  # what a closed bar leaves
        nbformat.v4.new_output("stream", name="stdout", text="test accuracy 81.2%\n"),
    ]
    nb.cells = [params, injected, train]
    nbformat.write(nb, path)


def test_the_executed_copy_drops_progress_bars_and_labels_the_injected_cell_once(tmp_path):
    path = tmp_path / "00_x.ipynb"
    _executed(path)
    tidy_executed(path)
    nb = clean(nbformat.read(path, as_version=4))  # the book cleans it again: no second label
    assert nb.cells[1].source == INJECTED_LABEL + 'profile = "full"'
    assert [o.get("text") for o in nb.cells[2].outputs] == ["UserWarning: a real warning\n", "test accuracy 81.2%\n"]


def test_every_notebook_names_the_kernel_make_setup_installs():
    """JupyterLab rewrites a notebook's kernelspec and language_info to the running kernel's when it
    starts: any difference marks the notebook modified as soon as it opens. (language_info's version
    is the course's Python; another Python version marks a notebook modified once.)"""
    import json
    import re

    from ipykernel.ipkernel import IPythonKernel

    from regkit.course.runner import KERNEL_NAME, NOTEBOOKS_DIR, REPO_ROOT

    makefile = (REPO_ROOT / "Makefile").read_text()
    name, display = re.search(r'ipykernel install --sys-prefix --name (\S+) --display-name "([^"]+)"', makefile).groups()
    assert name == KERNEL_NAME
    expected = {"display_name": display, "language": "python", "name": name}
    language = {k: v for k, v in IPythonKernel.language_info.items() if k != "version"}
    for path in sorted(NOTEBOOKS_DIR.glob("*.ipynb")):
        metadata = json.loads(path.read_text())["metadata"]
        assert metadata["kernelspec"] == expected, path.name
        assert {k: v for k, v in metadata["language_info"].items() if k != "version"} == language, path.name
        assert metadata["language_info"]["version"].startswith("3."), path.name
