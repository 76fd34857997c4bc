# jobqueue developer commands. Everything installs into ./.venv; nothing global but Debian tools.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench build crd clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## all-in-one role on sample data against local Redis (starts a throwaway redis-server if none answers)
	hack/run-local.sh

test: $(STAMP)  ## the whole test suite (private redis-servers, KMock for the operator; no Docker, no cluster)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff, mypy and the import contracts
	$(BIN)/ruff check runtime operator tests hack benchmarks
	$(BIN)/ruff format --check runtime operator
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)  ## throughput and pickup latency vs a redis-benchmark baseline, on a private Redis
	$(BIN)/python hack/bench.py

build: $(STAMP)  ## bin/job-queue-system, so the seed README's ./bin/job-queue-system commands work
	mkdir -p bin
	printf '#!/bin/sh\nexec "%s/$(BIN)/job-queue-system" "$$@"\n' "$(CURDIR)" > bin/job-queue-system
	chmod +x bin/job-queue-system
	bin/job-queue-system --version

clean:  ## remove the venv and build output
	rm -rf $(VENV) bin build dist *.egg-info runtime/*.egg-info
