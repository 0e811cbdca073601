# Two entry points: `make demo` and `make test`. Both create .venv when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench chaos clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/harmony demo

# Two workers: most tests wait on real meshes' timers, so the suite used a quarter of two
# cores run serially (24 min); two workers halve the wall time. TEST_WORKERS=0: serial.
TEST_WORKERS ?= 2
test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check harmony tests bench
	$(BIN)/ruff format --check harmony tests bench

typecheck: $(STAMP)
	$(BIN)/mypy harmony
	MYPYPATH=tests $(BIN)/mypy bench  # a bench nobody types breaks unseen (failover.py did)

bench: $(STAMP)
	$(BIN)/python bench/bridge.py

# The whole scenario library, then a random-mode soak (CHAOS_DURATION s of faults drawn
# from CHAOS_SEED on scenarios/soak.toml); reports and histories go to CHAOS_DIR.
# Fails if any run fails.
CHAOS_DURATION ?= 300
CHAOS_SEED ?= $(shell date +%s)
CHAOS_DIR ?= chaos-results
chaos: $(STAMP)
	$(BIN)/harmony sim suite scenarios --out $(CHAOS_DIR) --soak scenarios/soak.toml \
		--seed $(CHAOS_SEED) --duration $(CHAOS_DURATION)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
