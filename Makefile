# One entry point for everything: each target sets the environment up on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
STAMP := $(VENV)/.installed

.PHONY: setup course test lab bench lint strip clean

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

test: $(STAMP)
	$(PY) -m pytest

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(PY) -m regkit.bench all

lint: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/nbstripout --verify --keep-id notebooks/*.ipynb

strip: $(STAMP)
	$(VENV)/bin/nbstripout --keep-id notebooks/*.ipynb

clean:
	rm -rf $(VENV) runs .pytest_cache
