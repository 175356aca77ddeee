# dynamargin: `make demo` runs the main job end to end; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DATA ?=

export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: install demo test bench lint fuzz clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

demo: install
	$(VENV)/bin/dynamargin demo $(if $(DATA),--data $(DATA),)

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/run_all.py

fuzz: install
	DYNAMARGIN_FUZZ_EXAMPLES=5000 $(PY) -m pytest -q tests/serving/security/test_fuzz_endpoints.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf .dynamargin .pytest_cache .benchmarks
