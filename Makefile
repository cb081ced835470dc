# meshgate: `make up` runs the whole system locally, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install up down status test lint typecheck bench-skeleton bench-mesh bench-gateway bench attack chaos constraints clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "make: error: $(PYTHON) not found; install Python 3.11 or set PYTHON=" >&2; exit 1; }
	@echo "==> project environment ($(VENV), $(PYTHON))"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --disable-pip-version-check --progress-bar off -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

up: install
	@$(BIN)/meshgate up

down:
	@if [ -x $(BIN)/meshgate ]; then $(BIN)/meshgate down; else \
	  bash localstack/ministack/ministack.sh stop; bash localstack/kafka/kafka.sh stop; fi

status: install
	@$(BIN)/meshgate status

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

# The whole suite: static checks, then unit, integration and e2e tests against the real
# broker and emulator (started, topics created and stack deployed if not already).
test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/meshgate up --no-demo
	$(BIN)/pytest -q -p no:cacheprovider

bench-skeleton: install
	$(BIN)/meshgate up --no-demo
	$(BIN)/python -m bench.skeleton_latency

# Mesh vs raw aiokafka request/reply and publish, on the local broker (started if needed).
bench-mesh: install
	$(BIN)/python -m bench.mesh_vs_raw

# Edge gateway vs bare FastAPI + Mangum, in-process with a recorded API Gateway event (bus and
# stores in memory; no broker or emulator needed): per request and cold start.
bench-gateway: install
	$(BIN)/python -m bench.gateway_overhead

# Hostile input against the local stack (brought up if needed; 127.0.0.1 only): forged, tampered,
# replayed, stale, unauthorised, malformed and random records on the real broker, JWT, API-key
# and body attacks through the HTTP endpoint, a fuzzer over the envelope parser. Ends with
# `attack: tried=N refused=N reached_handler=N`; fails unless all refused and none reached.
attack: install
	$(BIN)/meshgate up --no-demo
	$(BIN)/python -m proof.attack

# Chaos: scripted faults under a bounded load on the local broker and emulator (private
# instances for the broker and emulator restarts); ends with `chaos: scenarios=N offered=N
# lost=N duplicated=N`, non-zero if anything was lost or applied twice.
chaos: install
	$(BIN)/meshgate up --no-demo
	$(BIN)/python -m proof.chaos

# Every benchmark, one report: bench/report.md, bench/report.json, bench/report_plots/*.png
# (git-ignored; ~7 min on 2 cores). BENCH_FLAGS=--fast for the seconds-long version.
bench: install
	$(BIN)/meshgate up --no-demo
	$(BIN)/python -m bench.report $(BENCH_FLAGS)

constraints:
	{ echo '# Exact versions for CI and the Lambda zips (pip install -c constraints.txt).'; \
	  echo '# Regenerate with `make constraints` after changing dependencies in pyproject.toml.'; \
	  $(BIN)/pip freeze --exclude-editable | grep -v '^meshgate'; } > constraints.txt

clean:
	rm -rf build .mypy_cache .ruff_cache .pytest_cache
