# dynamargin: `make demo` runs the main job end to end; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# npm ci writes this file; it is newer than the lock file once the node packages match it.
NODE_STAMP := onchain/node_modules/.package-lock.json
DATA ?=

export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: install demo test bench bench-dask-big calibrate-book fuzz fuzz-engine fuzz-api fuzz-steward vectors verify verify-mutants lint clean

install: $(STAMP) $(NODE_STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# solcjs, OpenZeppelin and the JavaScript verifier's libraries, exactly as locked.
$(NODE_STAMP): onchain/package.json onchain/package-lock.json
	cd onchain && npm ci --no-audit --no-fund --loglevel=error

demo: install
	$(VENV)/bin/dynamargin demo $(if $(DATA),--data $(DATA),)

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/run_all.py

# The replay's scale-out at the issue's size (#19 item 5): 1M traders per book x 2 seeds over
# 10 assets x 3.5 years, local runner against a 2-process Dask LocalCluster, results compared.
bench-dask-big: install
	nice -n 10 $(PY) benchmarks/bench_dask_replay.py --traders 1000000 --seeds 2 --days 1300

# The book's calibration table (#19 item 4): the range baseline and the simulated-vs-real
# daily liquidations per asset, fit 2021-05..2022-12 and test 2023-01..2025-06 (~8 min).
# CI checks the figures' definitions and the fit/test split in tests/liquidation/test_book_*.
calibrate-book: install
	nice -n 15 $(PY) scripts/calibrate_book.py --simulate legacy/wick/off --simulate market/bridge/off --traders 30000

# The long fuzz runs; CI runs a short version of each inside `make test`.
fuzz: fuzz-engine fuzz-api fuzz-steward

# The liquidation engine under >= 1M seeded random commands, every invariant checked
# (about 15 minutes on 2 cores).
FUZZ_COMMANDS ?= 1000000
# The options mode (option series, trades, expiries, Greek limits): ~80 commands/s per worker
# with every invariant and the joint-grid scan checked after each (about 4 minutes).
FUZZ_OPTION_COMMANDS ?= 40000
fuzz-engine: install
	nice -n 10 $(PY) scripts/fuzz_liquidation.py --commands $(FUZZ_COMMANDS) --workers 2
	nice -n 10 $(PY) scripts/fuzz_liquidation.py --options --commands $(FUZZ_OPTION_COMMANDS) --workers 2

# Every API endpoint's inputs beyond the OpenAPI schema, 5,000 examples per group (~2 min),
# and the venue's POST /v1/liquidation-price, 625 per group (5000 / 8: each replays an engine).
fuzz-api: install
	DYNAMARGIN_FUZZ_EXAMPLES=5000 $(PY) -m pytest -q tests/serving/security/test_fuzz_endpoints.py \
		tests/venue/test_liquidation_http.py

# The MarginSteward's bounds against the Python model, 500 random update sequences (~3 min).
fuzz-steward: install
	DYNAMARGIN_STEWARD_EXAMPLES=500 nice -n 10 $(PY) -m pytest -q tests/serving/onchain/test_steward_bounds_property.py

# Rewrite spec/risk-snapshot/vectors.json after a deliberate change of the standard (a new
# revision); CI fails while the committed vectors differ from what the code produces.
vectors: install
	$(PY) -c "from serving.standard_vectors import VECTORS_PATH, vectors_text; VECTORS_PATH.write_text(vectors_text())"
	cd onchain && node verifier/verify_vectors.mjs ../spec/risk-snapshot/vectors.json

# Formal verification with the long budget (CI runs the short one inside `make test`, in
# tests/verification): CrossHair on every contract of liquidation/rules and
# MultiplierPolicy.step, the z3 proofs of step, hypothesis-crosshair on selected property
# tests, and the liquidation suite with every contract checked at run time.
verify: install
	nice -n 10 $(PY) scripts/verify.py --budget long --jobs 2

# Reintroduce the day's defects (ramp reset, guard deadlock, NaN input) in temporary copies and
# require verification to find each one (CI runs the cheap ones in tests/verification).
verify-mutants: install
	nice -n 10 $(PY) scripts/verify_mutants.py --long

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf .dynamargin .pytest_cache .benchmarks onchain/.build
