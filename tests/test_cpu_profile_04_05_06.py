"""The cpu profile of notebooks 04, 05 and 06: their packaged results (evidence/NN.json) were made with the
catalogs' current cpu rows (else ``python -m regkit.course evidence`` exits 1), on >= 3 seeds per claim."""

import pytest

from regkit.course import evidence
from regkit.course.catalog import NUMBERS, load
from regkit.course.runner import cell_timeout_s

NOTEBOOKS = ("04", "05", "06")


def cpu_row(notebook):
    return load(notebook).row("cpu")


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_packaged_settings_are_the_catalogs_cpu_row(notebook):
    data = evidence.load(notebook)
    assert data is not None, f"evidence/{notebook}.json is missing: run the notebook with --profile cpu"
    assert evidence.stale_keys(data["settings"], cpu_row(notebook)) == []
    assert data["profile"] == "cpu" and data["threads"] == 1 and data["device"].startswith("cpu")
    assert not data["git_commit"].endswith("+dirty"), "packaged from uncommitted code: commit, then rerun"


def test_evidence_command_is_clean_with_the_cpu_rows_and_names_a_changed_setting(capsys):
    assert evidence.main(current_settings=cpu_row) == 0
    assert evidence.main(current_settings=lambda nb: cpu_row(nb) | ({"steps": 2000} if nb == "06" else {})) == 1
    assert "evidence/06.json was made with other settings than the current cpu profile (differing: steps)" \
        in capsys.readouterr().err


@pytest.mark.parametrize("claim", [c for c in evidence.CLAIMS if c.notebook in NOTEBOOKS], ids=lambda c: c.key)
def test_every_claim_has_at_least_three_seeds(claim):
    values = evidence.load(claim.notebook)["values"]
    seeds = {name: sorted(values[name]) for name in (claim.treatment, claim.baseline) if name is not None}
    assert all(len(s) >= 3 for s in seeds.values()), seeds
    if claim.notebook == "06" or claim.key in ("sam_vs_sgd", "gnp_vs_sgd"):  # the designs' 5 seeds
        assert all(len(s) == 5 for s in seeds.values()), seeds


def test_a_notebook_without_a_cpu_row_runs_its_quick_row():
    assert cell_timeout_s(None, "cpu") == 1800
    for number in NUMBERS:
        catalog = load(number)
        assert catalog.row("cpu") == (catalog.profiles["cpu"] if "cpu" in catalog.profiles else catalog.row("quick"))
    assert {"04", "05", "06"} <= {n for n in NUMBERS if "cpu" in load(n).profiles}
