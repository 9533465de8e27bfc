# One entry point for everything: each target sets the environment up on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
STAMP := $(VENV)/.installed

.PHONY: setup course test lab bench gpu-check gpu-wheels lint strip clean book

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (regkit)" >/dev/null
	touch $(STAMP)

course: $(STAMP)
	$(PY) -m regkit.course run --profile $(PROFILE)

# The offline book (README "Self-paced") from the executed notebooks of runs/$(PROFILE) (run `make course` first).
book: $(STAMP)
	$(PY) -m regkit.course book --run runs/$(PROFILE)

test: $(STAMP)
	$(PY) -m pytest

# JupyterLab with the course's settings (lab/overrides.json): the default kernel starts without a
# dialog, and no news or update notifications cover the plots.
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/ --LabApp.app_settings_dir=$(CURDIR)/lab

bench: $(STAMP)
	$(PY) -m regkit.bench all

# The GPU check (README "Benchmarks"): the venv's python when there is one, else python3 with this
# checkout on the path (a GPU machine without internet: `make gpu-check PY=python3`). Reference
# packages built by `make gpu-wheels` (here) into runs/wheels are installed from there, offline.
WHEELS := runs/wheels
GPU_PY = $(if $(wildcard $(PY)),$(PY),python3)
GPU_ARGS ?=

gpu-check:
	@if ls $(WHEELS)/*.whl >/dev/null 2>&1; then \
		$(GPU_PY) -m pip install --quiet --no-index --no-deps --upgrade --target $(WHEELS)/site $(WHEELS)/*.whl; fi
	PYTHONPATH=$(CURDIR):$(CURDIR)/$(WHEELS)/site$(if $(PYTHONPATH),:$(PYTHONPATH)) \
		$(GPU_PY) -m regkit.bench gpu $(GPU_ARGS)

gpu-wheels: $(STAMP)
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir $(WHEELS) adamp==0.3.0 pytorch-cpr==0.3.1

lint: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/nbstripout --verify --keep-id notebooks/*.ipynb

strip: $(STAMP)
	$(VENV)/bin/nbstripout --keep-id notebooks/*.ipynb

clean:
	rm -rf $(VENV) runs .pytest_cache
