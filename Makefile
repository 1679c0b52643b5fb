# Akson — two commands for a newcomer: `make run` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DB      ?= sqlite:///./var/akson.db
PORT    ?= 8000

.PHONY: run test lint bench bench-cost bench-scale bench-results bench-selftest install clean help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install Akson with its development tools

run: $(STAMP) ## Install, migrate a SQLite file, load demo data and serve on http://127.0.0.1:8000
	AKSON_DATABASE_URL=$(DB) $(BIN)/akson db upgrade
	AKSON_DATABASE_URL=$(DB) $(BIN)/akson demo --if-empty
	AKSON_DATABASE_URL=$(DB) $(BIN)/akson serve --host 127.0.0.1 --port $(PORT)

test: $(STAMP) ## Run the whole test suite (SQLite and PostgreSQL) and the linters
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q -n 2 --dist loadfile

lint: $(STAMP) ## ruff, mypy and the layer contract only
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP) ## HTTP benchmark on PostgreSQL and SQLite (prints req/s, p50/p95/p99, memory)
	$(BIN)/python bench/http_bench.py --db both

bench-cost: $(STAMP) ## Trust services' cost: the HTTP benchmark's phases with and without them, interleaved
	$(BIN)/python bench/cost.py --rounds $(or $(ROUNDS),5)

bench-scale: $(STAMP) ## Search, $$everything and export at 10k/100k/1M resources on PostgreSQL
	$(BIN)/python bench/scale.py --sizes $(or $(SIZES),10000,100000,1000000)

bench-results: $(STAMP) ## Results service: 10M lab Observations (kept), patient lookups p50/p95/p99, HL7 ingest rate
	$(BIN)/python bench/results_bench.py --keep --reuse $(BENCH_RESULTS_ARGS)

bench-selftest: $(STAMP) ## Check the benchmark harness against an in-memory stand-in server
	$(BIN)/python bench/selftest.py

clean: ## Remove the venv and local databases
	rm -rf $(VENV) var
