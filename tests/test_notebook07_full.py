"""Notebook 07's full-profile code path (ResNet-18, the papers' recipes) end to end at toy size on the CPU.

The quick profile runs in ``test_notebooks.py``; the full profile is meant for a GPU and CIFAR, so here it
runs on synthetic 3x32x32 images with one step, width 2 and one seed: every section must execute, and a
run that changes the published settings must never be recorded under a paper's reference key.
"""

import pytest

from regkit.course.recording import read_results
from regkit.course.references import REFERENCES
from regkit.course.runner import RUNS_DIR, load_manifest, run_course

TOY = {"dataset": "synthetic", "steps": 1, "width": 2, "train_size": 128, "seeds": [0], "threads": 1}


@pytest.mark.notebook
def test_full_profile_runs_every_section_at_toy_size_and_records_no_reproduction():
    out = RUNS_DIR / "test-full"
    run = run_course("full", only=["07"], params=TOY, out_dir=out)
    if run.failed:
        entry = load_manifest(out)["notebooks"]["07_cifar_experiments"]
        pytest.fail(f"{run.failed[0].message}\n{entry['traceback']}\nexecuted copy: {out / '07_cifar_experiments.ipynb'}")
    results = read_results(out / "07_cifar_experiments.results.json")
    sections = {name.split(".")[2] for name in results}
    assert sections == {"cpr", "implicit", "adamp", "gnp"}, sorted(results)
    assert all(name.startswith("cifar_experiments.full.") for name in results), sorted(results)
    assert not set(results) & set(REFERENCES)
    assert all(entry["meta"]["profile"] == "full" and entry["meta"]["dataset"] == "synthetic"
               for entry in results.values())
