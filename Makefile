# jobqueue developer commands. Everything installs into ./.venv; nothing global but Debian tools.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# command:Debian package of the tools the tests run (promtool checks the alert rules,
# shellcheck the kind e2e script, redis-server is every test's Redis).
DEB_TOOLS := redis-server:redis-server shellcheck:shellcheck promtool:prometheus

.PHONY: run test lint bench build tools clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## all-in-one role on sample data against local Redis (starts a throwaway redis-server if none answers)
	hack/run-local.sh

tools:  ## install the Debian tools the tests use when missing (apt-get, as root)
	@missing=""; for pair in $(DEB_TOOLS); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "the tests need these Debian packages:$$missing (sudo apt-get install$$missing)" >&2; exit 1; fi; fi

test: $(STAMP) tools  ## the whole test suite (private redis-servers, KMock for the operator; no Docker, no cluster)
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
