# The two commands that do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BENCH_VENV ?= .venv-bench
# Exact versions the suite was last run against; `make lock` refreshes it. pyproject.toml keeps
# only lower bounds, for users who `pip install rota`.
LOCK := requirements.lock
LOCK_VENV ?= .venv-lock

.PHONY: demo test docs lint format test-fast soak bench bench-queue bench-steps bench-precision bench-agents venv lock clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev]' -c $(LOCK)
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/rota demo

test: $(STAMP) lint
	$(BIN)/python -m pytest --durations=40  # the slowest tests, to keep the run under 15 minutes

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

# The documentation site, offline, into site/ (tests/docs/test_site.py builds it too).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench examples
	$(BIN)/ruff format src tests bench examples

# The chaos suite for minutes (docs/reliability.md has its figures): CHAOS_SECONDS of random
# faults under a mixed workload, then the invariants. CHAOS_SEED=N replays a run.
CHAOS_SECONDS ?= 300
chaos: $(STAMP)
	CHAOS_LONG=1 CHAOS_SECONDS=$(CHAOS_SECONDS) $(BIN)/python -m pytest -p no:cacheprovider -s tests/chaos/test_chaos.py -k "test_long_chaos or sqlite"

# The soak (about 15 minutes, not in `make test`; docs/reliability.md has its figures):
# SOAK_SECONDS at a fixed offered load on 4 workers and 2 schedulers, then the drain with 1, 2
# and 4 worker processes. The table is printed; the samples go to SOAK_OUT.
SOAK_SECONDS ?= 600
SOAK_OUT ?= test-artifacts/soak-result.json
soak: $(STAMP)
	mkdir -p $(dir $(SOAK_OUT))
	$(BIN)/python -m bench.soak --seconds $(SOAK_SECONDS) --out $(SOAK_OUT)

# The fuzz properties of every parser of outside input, with many more examples than in
# `make test`.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -p no:cacheprovider tests/fuzz

$(BENCH_VENV)/.installed-stamp: pyproject.toml $(LOCK) bench/requirements-peers.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -e . -r bench/requirements-peers.txt -c $(LOCK)
	touch $@

bench: bench-queue bench-steps bench-precision bench-agents

bench-queue: $(BENCH_VENV)/.installed-stamp
	$(BENCH_VENV)/bin/python -m bench.queue_throughput

bench-steps: $(BENCH_VENV)/.installed-stamp
	$(BENCH_VENV)/bin/python -m bench.step_overhead

bench-precision: $(BENCH_VENV)/.installed-stamp
	$(BENCH_VENV)/bin/python -m bench.schedule_precision

bench-agents: $(BENCH_VENV)/.installed-stamp
	$(BENCH_VENV)/bin/python -m bench.agent_fanout

# A scratch venv gets the newest releases pyproject.toml allows; their exact versions become the
# lock. Run `make test` after it, and commit requirements.lock with what it passed on.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade -e '.[dev]'
	( echo "# Exact versions for make's installs: refresh with 'make lock' (see Makefile)."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable ) > $(LOCK)
	rm -rf $(LOCK_VENV)

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(LOCK_VENV) .pytest_cache .ruff_cache .mypy_cache rota.db rota.db-*
