"""The parameter catalogs (regkit/course/catalog/nbNN.py): one home per notebook for its profiles and parameters.

Each notebook's ``parameters`` cell is the catalog's rendering, every profile value passes its own
checks, ``notebook_settings`` applies and validates overrides, the runner and the sweep check ``-p`` /
``--grid`` values against the catalog before any kernel starts, and ``list`` shows every knob.
"""

import json
from pathlib import Path

import nbformat
import pytest

import regkit.course.sweep as sweep_module
from regkit.course import notebook_settings
from regkit.course.__main__ import main
from regkit.course.catalog import NUMBERS, for_stem, load, parameters_source
from regkit.course.notebook import CourseError, discover
from regkit.course.profiles import PROFILES
from regkit.course.runner import NOTEBOOKS_DIR, resolve_parameters
from regkit.course.sweep import plan_sweep, run_sweep

COURSE = {nb.number: nb for nb in discover(NOTEBOOKS_DIR)}


@pytest.mark.parametrize("number", NUMBERS)
def test_parameters_cell_is_the_catalog_and_the_settings_cell_reads_it(number):
    nb = COURSE[number]
    cells = nbformat.read(nb.path, as_version=4).cells
    index = nb.parameters_cell_index()
    assert cells[index].source == parameters_source(number)
    assert set(nb.parameters()) == {"profile", *load(number).knobs}
    assert f'notebook_settings("{number}", globals())' in cells[index + 1].source
    assert for_stem(nb.stem).number == number


@pytest.mark.parametrize("number", NUMBERS)
@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_sets_every_parameter_to_a_valid_value(number, profile):
    catalog = load(number)
    row = catalog.row(profile)
    for knob in catalog.knobs.values():
        assert knob.name in row, f"notebook {number}: profile {profile!r} has no value for {knob.name!r}"
        assert knob.check(row[knob.name], "test") == row[knob.name]
    if profile == "quick" and row.get("dataset") is not None:
        assert row["dataset"] == "fashion_mnist_subset"  # the embedded data: quick runs offline


def test_one_name_per_concept_across_notebooks():
    kinds = {}
    for number in NUMBERS:
        for knob in load(number).knobs.values():
            kinds.setdefault(knob.name, set()).add(knob.kind)
    assert all(len(k) == 1 for k in kinds.values()), {n: k for n, k in kinds.items() if len(k) > 1}
    assert "seed" not in kinds and kinds["seeds"] == {list}
    assert {"lr", "kappa_init_method", "kappa_init_param", "reg_function", "weight_decay"} <= set(load("03").knobs)
    assert {"rho", "alpha", "r", "difference", "warmup"} <= set(load("04").knobs)
    assert {"lr", "momentum", "weight_decay", "delta", "wd_ratio"} <= set(load("02").knobs)
    assert {"batch_size", "micro_batch_size", "lam", "penalty"} <= set(load("05").knobs)
    assert {"p", "train_fraction", "lr", "weight_decay", "methods"} <= set(load("06").knobs)


def test_notebook_settings_applies_overrides_from_the_namespace():
    names = {"profile": "quick"} | dict.fromkeys(load("03").knobs)
    cfg = notebook_settings("03", names | {"lr": 1, "kappa_init_method": "dependent"})
    assert cfg.lr == 1.0 and type(cfg.lr) is float
    assert cfg.kappa_init_method == "dependent" and cfg.overridden == ("lr", "kappa_init_method")
    assert cfg.steps == 300 and cfg.seeds == [0]  # the rest is the quick profile's
    assert notebook_settings("03", "full").lr == 1e-3


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (("03", "quick"), None, None),
        (("03", "fast"), ValueError, "profile='fast' is not one of: 'quick', 'full'"),
        (("03", "quick", {"learning_rate": 1.0}), ValueError,
         "notebook 03: unknown parameter 'learning_rate'; its parameters are: dataset, steps"),
        (("03", "quick", {"lr": "big"}), TypeError, "lr='big' has type str; notebook 03, profile 'quick' expects float or int"),
        (("03", "quick", {"kappa_init_method": "random"}), ValueError,
         "kappa_init_method='random': 'random' is not one of 'uniform', 'warm_start', 'dependent', 'inflection_point'"),
        (("03", "quick", {"steps": 0}), ValueError, "steps=0 must be >= 1 (notebook 03, profile 'quick')"),
        (("00", "quick", {"seeds": [0, 1]}), ValueError, "seeds=[0, 1] must have 1 item(s)"),
        (("05", "quick", {"lam": {"gn": -1.0}}), ValueError, "lam={'gn': -1.0} must be >= 0"),
        (("05", "quick", {"lam": {"l2": 1.0}}), ValueError, "lam={'l2': 1.0}: 'l2' is not one of 'gn', 'fisher'"),
    ],
)
def test_notebook_settings_refuses_bad_values_with_the_choices(args, error, message):
    number, profile, *overrides = args
    if error is None:
        notebook_settings(number, profile)
        return
    with pytest.raises(error) as raised:
        notebook_settings(number, profile, **(overrides[0] if overrides else {}))
    assert message in str(raised.value)


def test_a_namespace_missing_a_parameter_is_named():
    namespace = {"profile": "quick"} | {name: None for name in load("04").knobs if name not in ("rho", "alpha")}
    with pytest.raises(ValueError, match="notebook 04: the parameters cell must define rho, alpha"):
        notebook_settings("04", namespace)


def test_adding_a_profile_is_one_entry(monkeypatch):
    import regkit.course.catalog as catalog

    monkeypatch.setitem(catalog.PROFILE_ROWS, "cpu", ("quick", {"steps": 7, "label_noise": 0.2}))
    row = load("00").row("cpu")
    assert row["steps"] == 7 and "label_noise" not in row  # only the settings a notebook has
    assert {k: v for k, v in row.items() if k != "steps"} == {k: v for k, v in load("00").row("quick").items()
                                                                if k != "steps"}


# --- the runner and the sweep check values against the catalog before anything runs ----------------

def test_runner_parses_the_issue_command_for_the_catalog_types():
    params = resolve_parameters([COURSE["03"]], "quick", {"steps": "500", "lr": "3e-4", "seeds": "[0, 1]"})
    assert params[COURSE["03"].stem] == {"profile": "quick", "steps": 500, "lr": 3e-4, "seeds": [0, 1]}


@pytest.mark.parametrize(
    ("number", "params", "message"),
    [
        ("03", {"kappa_init_method": "random"}, "kappa_init_method='random': 'random' is not one of 'uniform'"),
        ("03", {"lr": "fast"}, "parameter 'lr' of 03_constrained_parameter_regularization.ipynb (default None) "
                               "expects float, got 'fast'"),
        ("04", {"rho": "-0.1"}, "rho=-0.1 must be >= 0"),
        ("06", {"methods": "['sgd']"}, "methods=['sgd']: 'sgd' is not one of 'adam'"),
        ("01", {"steps": "10"}, "steps=10 must be >= 20"),
    ],
)
def test_runner_refuses_values_the_catalog_rejects(number, params, message):
    with pytest.raises(CourseError) as raised:
        resolve_parameters([COURSE[number]], "quick", params)
    assert message in str(raised.value)


def test_sweep_plans_a_catalog_parameter_with_seeds_as_lists():
    plan = plan_sweep("03", ["kappa_init_param=30,60"], seeds=2)
    assert [r.run_id for r in plan.runs] == ["kappa_init_param=30.0,seed=0", "kappa_init_param=30.0,seed=1",
                                             "kappa_init_param=60.0,seed=0", "kappa_init_param=60.0,seed=1"]
    assert plan.runs[1].parameters == {"profile": "quick", "kappa_init_param": 30.0, "seeds": [1]}
    with pytest.raises(CourseError, match="kappa_init_method='none': 'none' is not one of"):
        plan_sweep("03", ["kappa_init_method=warm_start,none"])


def fake_execute(nb, parameters, out_dir, *, results_name=None, **_):
    """Stands in for papermill: records a number that depends on the injected parameters."""
    score = 1000 * parameters.get("lr", 0) + 10 * parameters.get("weight_decay", 0) + parameters.get("kappa_init_param", 0)
    (Path(out_dir) / results_name).write_text(json.dumps({"fake.score": {"value": score, "meta": {}}}))
    return {"status": "ok", "parameters": parameters, "notebook_hash": nb.content_hash(), "duration_s": 0.0}


@pytest.fixture
def in_process(monkeypatch):
    monkeypatch.setattr(sweep_module, "execute", fake_execute)
    monkeypatch.setattr(sweep_module, "map_local", lambda fn, tasks, workers: ((t, fn(t)) for t in tasks))


def test_a_sweep_over_a_knob_has_one_summary_row_per_value(in_process, tmp_path):
    result = run_sweep("03", ["kappa_init_param=30,60,120"], out_dir=tmp_path)
    assert result.summary[["kappa_init_param", "mean"]].values.tolist() == [[30.0, 30.0], [60.0, 60.0], [120.0, 120.0]]


def test_a_two_axis_lr_weight_decay_sweep_draws_a_heatmap(in_process, tmp_path):
    result = run_sweep("03", ["lr=1e-3,3e-3", "weight_decay=0,0.1"], out_dir=tmp_path)
    assert len(result.summary) == 4 and (tmp_path / "plots" / "fake.score.png").exists()
    assert (tmp_path / "plots" / "fake.score.png") in result.files


def test_list_shows_every_parameter_with_type_doc_and_profile_values(capsys):
    assert main(["list", "--only", "02,03,04"]) == 0
    out = capsys.readouterr().out
    assert "    lr = None  (float): peak learning rate of every optimizer\n        quick: 0.003; full: 0.001; cpu: 0.003\n" in out
    assert "    kappa_init_method = None  (str):" in out and "    rho = None  (float): SAM's ascent radius" in out
    assert "    profile = 'quick'  (str): one of quick, full, cpu" in out
    assert "    momentum = None  (float):" in out and "one of: uniform, warm_start, dependent, inflection_point" in out


def test_notebook07_sections_take_the_shared_and_their_own_parameters():
    from regkit.course.catalog.nb07 import section_row, section_settings

    options = notebook_settings("07", "full", dataset="synthetic", seeds=[0, 1], gnp_r=0.05)
    gnp = section_settings(options, "gnp")
    assert (gnp.r, gnp.dataset, gnp.seeds) == (0.05, "synthetic", [0, 1])
    assert section_settings(options, "implicit").datasets == ["synthetic"]  # that section runs a list
    assert section_settings(options, "cpr").lr == section_row("cpr", "full")["lr"] == 1e-3
    assert section_row("cpr", "full")["seeds"] == [0, 1, 2]  # the paper's 3 seeds
    assert dict(section_settings(notebook_settings("07", "quick"), "adamp")) == section_row("adamp", "quick")
