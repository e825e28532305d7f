# Every target installs what it needs: a fresh clone runs `make test` or `make demo` directly.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed-$(shell cat requirements/*.txt | sha256sum | cut -c1-12)

# SAM CLI and boto3 need a region and credentials even offline; nothing here talks to AWS.
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_ACCESS_KEY_ID ?= testing
export AWS_SECRET_ACCESS_KEY ?= testing
export SAM_CLI_TELEMETRY := 0
export POWERTOOLS_DEV ?= false
export PYTHONDONTWRITEBYTECODE := 1
# The core package lives in layers/core (on /opt/python in Lambda); scripts import it like the tests do.
export PYTHONPATH := $(CURDIR)/layers/core:$(CURDIR)

.PHONY: help venv lint test build model evaluate replay demo local bench openapi clean

help:
	@echo "make demo      run the whole service locally (moto + real handlers) and show it working"
	@echo "make test      lint, validate the template, run the test suite"
	@echo "make model     train, quantize and export the model into layers/model/model/"
	@echo "make evaluate  offline evaluation against baselines -> model_build/report.{json,md,png}"
	@echo "make replay    streaming replay evaluation -> model_build/replay.json"
	@echo "make local     keep the local stack running (see README for curl commands)"
	@echo "make bench     run the benchmarks -> bench/results/*.json"
	@echo "make openapi   regenerate docs/openapi.json from the recommend routes"
	@echo "make build     sam build"

$(STAMP): requirements/runtime.txt requirements/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/sam validate --lint --template template.yaml

test: lint
	$(BIN)/pytest

build: venv
	# the DependencyLayer Makefile runs pip with cross-platform flags; use the project's pip
	PIP="$(abspath $(BIN))/pip" REQUIREMENTS="$(CURDIR)/requirements/runtime.txt" \
		$(BIN)/sam build --template template.yaml

model: venv
	PYTHONPATH=layers/core $(PY) -m model_build.train

evaluate: venv
	PYTHONPATH=layers/core $(PY) -m model_build.evaluate

replay: venv
	$(PY) -m model_build.replay

demo: venv
	$(PY) -m infra.local.demo

local: venv
	$(PY) -m infra.local.stack

openapi: venv
	$(PY) -m functions.recommend.openapi

# The recommend cold start is timed against a site holding only what Lambda has (the layer's packages
# and boto3), not the dev venv, whose extras (awscrt, pyOpenSSL) botocore would import.
BENCH_RUNTIME := .cache/bench-runtime
$(BENCH_RUNTIME)/.installed: requirements/runtime.txt requirements/dev.txt | venv
	rm -rf $(BENCH_RUNTIME)
	$(PY) -m pip install -q --target $(BENCH_RUNTIME) -r requirements/runtime.txt \
		$$(grep -E '^boto3==' requirements/dev.txt)
	touch $@

bench: venv $(BENCH_RUNTIME)/.installed
	$(PY) bench/ingest.py
	$(PY) bench/scoring.py
	$(PY) bench/recommend.py --runtime-dir $(BENCH_RUNTIME)

clean:
	rm -rf .aws-sam .pytest_cache .ruff_cache .hypothesis model_build/.work
