# The two commands that do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BENCH_VENV ?= .venv-bench

.PHONY: demo test lint format test-fast bench bench-queue bench-steps bench-precision bench-agents venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/rota demo

test: $(STAMP) lint
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench examples
	$(BIN)/ruff format src tests bench examples

$(BENCH_VENV)/.installed-stamp: pyproject.toml bench/requirements-peers.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -e . -r bench/requirements-peers.txt
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

clean:
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache .ruff_cache .mypy_cache rota.db rota.db-*
