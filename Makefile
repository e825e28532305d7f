# Every target installs what it needs: a fresh clone runs `make test` or `make demo` directly.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed-$(shell cat requirements/dev.txt requirements/runtime.txt | sha256sum | cut -c1-12)

# Lambda runs python3.12; the dev venv is 3.11 (tensorflow-cpu 2.15.1 and tflite-runtime 2.14 have no
# 3.12 wheels). python3.12 runs the serving tests against the locked runtime (test-312), compiles the
# layers' bytecode and times the cold start: from PATH if it really is 3.12 (a pyenv shim may not be),
# else pyenv's. Exported so the layer Makefiles that sam build runs use the same one.
PYTHON312 := $(or $(PYTHON312),$(firstword $(foreach p,python3.12 $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12),\
	$(if $(shell $(p) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null && echo y),$(p)))))
export PYTHON312
VENV312 := .venv-312
STAMP312 := $(VENV312)/.installed-$(shell cat requirements/runtime.lock requirements/test-312.lock | sha256sum | cut -c1-12)

# SAM CLI and boto3 need a region and credentials even offline; nothing here talks to AWS.
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_ACCESS_KEY_ID ?= testing
export AWS_SECRET_ACCESS_KEY ?= testing
export SAM_CLI_TELEMETRY := 0
export POWERTOOLS_DEV ?= false
export PYTHONDONTWRITEBYTECODE := 1
# The core package lives in layers/core (on /opt/python in Lambda); scripts import it like the tests do.
export PYTHONPATH := $(CURDIR)/layers/core:$(CURDIR)

.PHONY: retrain demo-loop experiment-simulation experiment-report bench-impressions publish-model rollback bench-peer bench-scale cost help venv venv-312 lint test test-312 lock build model evaluate replay demo local bench openapi clean

help:
	@echo "make demo      run the whole service locally (moto + real handlers) and show it working"
	@echo "make test      lint, validate the template, run the test suite (3.11), then test-312"
	@echo "make test-312  the serving tests again under python3.12 against the locked runtime (.venv-312)"
	@echo "make lock      recompile requirements/runtime.lock and test-312.lock with python3.12 (needs PyPI)"
	@echo "make model     train, quantize and export the model into layers/model/model/"
	@echo "make evaluate  offline evaluation against baselines -> model_build/report.{json,md,png}"
	@echo "make replay    streaming replay evaluation -> evaluation/replay.json"
	@echo "make experiment-simulation  A/B and A/A through the real handlers -> EXPERIMENT_ARCHIVE"
	@echo "make experiment-report      read-out of EXPERIMENT_ARCHIVE -> evaluation/experiment_report.{md,json,png}"
	@echo "make new-items new items without retraining, held out and replayed -> evaluation/new_items.json"
	@echo "make local     keep the local stack running (see README for curl commands)"
	@echo "make test-browser  the demo web page in headless chromium (also part of make test's pytest run)"
	@echo "make bench     run the benchmarks -> bench/results/*.json"
	@echo "make openapi   regenerate docs/openapi.json from the recommend routes"
	@echo "make build     sam build"
	@echo "make publish-model  publish layers/model/model (MODEL=dir) to the registry and make it live"
	@echo "make rollback VERSION=...  point the live model back at a published version (or bootstrap)"
	@echo "make retrain   train on the local archive, gate against the serving model, publish to make local's registry"
	@echo "make demo-loop the learning loop locally: traffic, archive, retrain, hot swap, rollback"

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
	# Types: strict on the core, checked on the handlers; one direction of imports between packages.
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/sam validate --lint --template template.yaml

test: lint
	$(BIN)/pytest
	$(MAKE) --no-print-directory test-312

# The serving code as Lambda runs it: python3.12, exactly the locked runtime (the layer is built from the
# same lock) plus the test tools. Tests that need TensorFlow (tests/model_build) stay on 3.11, and so
# does the tflite-runtime cross-check (tflite-runtime has no cp312 wheel).
SERVING_TESTS := tests/core tests/functions tests/infra tests/test_openapi.py tests/test_api_fuzz.py \
	--deselect tests/core/test_scorer.py::test_same_answers_on_tflite_runtime
test-312:
	@if [ -z "$(PYTHON312)" ]; then \
		echo "test-312: python3.12 not found (PATH or ~/.pyenv/versions/3.12*): the serving tests did NOT run" \
			"under Lambda's Python. Install python3.12 or pass PYTHON312=/path/to/python3.12." >&2; \
		if [ "$$CI" = true ]; then exit 1; fi; \
		echo "test-312: WARNING: skipped (outside CI)" >&2; \
	else \
		$(MAKE) --no-print-directory venv-312 && \
		echo "$(VENV312)/bin/python -m pytest $(SERVING_TESTS)" && \
		$(VENV312)/bin/python -m pytest $(SERVING_TESTS); \
	fi

venv-312: $(STAMP312)

# The demo page (web/) in headless chromium against the local stack; `make test`'s pytest run includes it.
# Needs Debian's chromium and chromium-driver (.ci/run installs them): skipped without, failed with CI=true.
.PHONY: test-browser
test-browser: venv
	$(BIN)/pytest tests/browser

# test-312.lock holds the runtime at runtime.lock's versions (it is compiled with -c runtime.lock);
# installing runtime.lock last makes sure of it, and pip check that the two agree.
$(STAMP312): requirements/runtime.lock requirements/test-312.lock
	rm -rf $(VENV312)
	$(PYTHON312) -m venv $(VENV312)
	$(VENV312)/bin/python -m pip install -q --upgrade pip
	$(VENV312)/bin/python -m pip install -q --require-hashes -r requirements/test-312.lock
	$(VENV312)/bin/python -m pip install -q --require-hashes -r requirements/runtime.lock
	$(VENV312)/bin/python -m pip check
	touch $@

# Recompile the locks for python3.12 (Lambda's interpreter, manylinux x86_64); pins already in a lock
# stay unless runtime.txt or test-312.in no longer allow them (`make lock UPGRADE=--upgrade` moves them).
LOCK_TOOLS := .cache/pip-tools-312
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_TOOLS)/bin/pip-compile --quiet --generate-hashes \
	--allow-unsafe --no-strip-extras --no-emit-index-url --no-emit-find-links $(UPGRADE)
lock:
	@test -n "$(PYTHON312)" || { echo "make lock needs python3.12 (PATH or ~/.pyenv/versions/3.12*)" >&2; exit 1; }
	test -x $(LOCK_TOOLS)/bin/pip-compile || { $(PYTHON312) -m venv $(LOCK_TOOLS) && \
		$(LOCK_TOOLS)/bin/pip install -q pip-tools==7.6.2; }
	$(PIP_COMPILE) --output-file requirements/runtime.lock requirements/runtime.txt
	$(PIP_COMPILE) --output-file requirements/test-312.lock requirements/test-312.in
	# sam build copies layers/deps to a scratch directory: the layer keeps its own copy of the lock.
	cp requirements/runtime.lock layers/deps/runtime.lock

build: venv
	# the DependencyLayer Makefile runs pip with cross-platform flags; use the project's pip
	PIP="$(abspath $(BIN))/pip" REQUIREMENTS="$(CURDIR)/requirements/runtime.lock" \
		$(BIN)/sam build --template template.yaml

# DATA=ecommerce (or a dataset directory) trains and evaluates on it, into .cache/models/<name> unless OUT is
# given; without DATA, MovieLens-100k into the shipped artifact.
model: venv
	PYTHONPATH=layers/core $(PY) -m model_build.train --data $(or $(DATA),movielens) \
		$(if $(OUT),--out $(OUT)) $(if $(EPOCHS),--epochs $(EPOCHS)) $(TRAIN_ARGS)

evaluate: venv
	PYTHONPATH=layers/core $(PY) -m model_build.evaluate --data $(or $(DATA),movielens) $(if $(OUT),--model-dir $(OUT))
	# the same test split answered by the recommend handler with template.yaml's settings -> report.md
	$(PY) -m evaluation.as_served --data $(or $(DATA),movielens) $(if $(OUT),--model-dir $(OUT)) --report

replay: venv
	$(PY) -m evaluation.replay

# Experiments: the ML-100k simulator through the real handlers (A/B model vs popular-only, A/A) into
# EXPERIMENT_ARCHIVE, then the read-out of that archive (attribution SQL on DuckDB, CIs, test, chart).
EXPERIMENT_ARCHIVE ?= .cache/experiment-archive
experiment-simulation: venv
	$(PY) -m evaluation.ab_simulation --through-stack --archive $(EXPERIMENT_ARCHIVE)

experiment-report: venv
	$(PY) -m evaluation.experiment_report $(EXPERIMENT_ARCHIVE)

bench-impressions: venv
	$(PY) bench/impressions.py

# New items without retraining: hold out the items first rated after the cutoff, add them through the
# catalog API, replay; writes evaluation/new_items.json and its section of model_build/report.md.
.PHONY: new-items
new-items: venv
	$(PY) -m evaluation.new_items

# DATA=ecommerce (or a dataset directory) runs the any-catalog demo: import, events, filters, similar items.
demo: venv
ifdef DATA
	$(PY) -m demo.catalog --data $(DATA)
else
	$(PY) -m demo.movielens
endif

local: venv
	$(PY) -m infra.local.stack

openapi: venv
	$(PY) -m functions.recommend.openapi

# The recommend bench runs the function as Lambda does (bench/recommend.py --lambda-like): python3.12 on
# the layers `make build` wrote, plus what the Lambda runtime itself provides, boto3 and its dependencies,
# at the lock's versions (hash-checked, no other package to hide a gap in the layer).
LAMBDA_BOTO := .cache/lambda-boto3
LAMBDA_RUNTIME_PACKAGES := boto3 botocore s3transfer jmespath python-dateutil six urllib3
$(LAMBDA_BOTO)/.installed: requirements/runtime.lock
	@test -n "$(PYTHON312)" || { echo "make bench needs python3.12 (PATH or ~/.pyenv/versions/3.12*)" >&2; exit 1; }
	rm -rf $(LAMBDA_BOTO) && mkdir -p $(LAMBDA_BOTO)
	awk -v names="$(LAMBDA_RUNTIME_PACKAGES)" 'BEGIN { split(names, n, " "); for (i in n) keep[n[i]] = 1 } \
		/^[a-z0-9]/ { name = $$1; sub(/[=[].*/, "", name); on = (name in keep) } on && !/^ *#/' \
		requirements/runtime.lock > $(LAMBDA_BOTO)/requirements.lock
	$(PYTHON312) -m pip install -q --no-compile --require-hashes --no-deps --only-binary=:all: \
		--target $(LAMBDA_BOTO) -r $(LAMBDA_BOTO)/requirements.lock
	# as on Lambda's /var/runtime: bytecode compiled by the same python3.12
	$(PYTHON312) -m compileall -q -j0 --invalidation-mode unchecked-hash $(LAMBDA_BOTO)
	touch $@

bench: venv build $(LAMBDA_BOTO)/.installed
	$(PY) bench/ingest.py
	$(PY) bench/scoring.py
	$(PY) bench/recommend.py --lambda-like --python $(PYTHON312) --compare-without-bytecode

# The peer (RecBole SASRec on PyTorch) and the approximate indexes each get their own virtualenv.
PEER_VENV := .cache/peer-venv
ANN_VENV := .cache/ann-venv
$(PEER_VENV)/.installed:
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/pip install -q torch==2.13.0
	$(PEER_VENV)/bin/pip install -q --no-deps recbole==1.2.1
	$(PEER_VENV)/bin/pip install -q colorlog==6.12.0 pandas==3.1.1 tensorboard==2.21.0 texttable==1.7.2 colorama==0.4.6
	touch $@
$(ANN_VENV)/.installed:
	$(PYTHON) -m venv $(ANN_VENV)
	$(ANN_VENV)/bin/pip install -q numpy==1.26.4 usearch==2.26.6 faiss-cpu==1.15.1 hnswlib==0.8.0
	touch $@

bench-peer: venv $(PEER_VENV)/.installed
	$(PY) bench/peer.py --levers

bench-scale: venv $(ANN_VENV)/.installed
	$(PY) bench/scale.py

cost: venv
	$(PY) scripts/cost_model.py --json bench/results/cost.json

# The model registry (docs/ARCHITECTURE.md, "Model registry and hot swap"). BUCKET and POINTER default to
# the stack's outputs (STACK, default rtrec); ENDPOINT_URL targets a local moto server. Against AWS the
# fake credentials this Makefile exports for offline tools are dropped, so your own profile is used.
REGISTRY_ARGS = $(if $(BUCKET),--bucket $(BUCKET)) $(if $(POINTER),--pointer $(POINTER)) \
	$(if $(STACK),--stack-name $(STACK)) $(if $(ENDPOINT_URL),--endpoint-url $(ENDPOINT_URL))
REGISTRY_ENV = env $(if $(ENDPOINT_URL),,$(if $(filter testing,$(AWS_ACCESS_KEY_ID)),-u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY))
publish-model: venv
	$(REGISTRY_ENV) $(PY) scripts/publish_model.py --dir $(or $(MODEL),layers/model/model) $(REGISTRY_ARGS)

rollback: venv
	@test -n "$(VERSION)" || { echo "usage: make rollback VERSION=<published version or bootstrap>" >&2; exit 1; }
	$(REGISTRY_ENV) $(PY) scripts/rollback_model.py $(VERSION) $(REGISTRY_ARGS)

clean:
	rm -rf .aws-sam .pytest_cache .ruff_cache .hypothesis model_build/.work

# The learning loop (docs/ARCHITECTURE.md, "Retraining"). `make retrain` runs the scheduled job's entry point
# on the local archive (ARCHIVE, default .cache/archive; DAYS, default 30) and publishes to the registry of
# a running `make local` (.cache/local-stack.json); without one it trains and gates, and publishes nothing.
# EPOCHS (default 2: a short run), RETRAIN_ARGS for anything else (--tolerance, --holdout-days, --dry-run).
# With ARCHIVE=s3://... (the scheduled job) the fake credentials exported above are dropped: the job's own are used.
# model_build.retrain's exit codes 3 (the gate refused the candidate) and 4 (not enough data in the window)
# are outcomes, not failures: make (and the scheduled CodeBuild job that runs this target) succeeds and says
# which; anything else fails the run.
retrain: venv
	@code=0; env $(if $(filter s3://%,$(ARCHIVE)),$(if $(filter testing,$(AWS_ACCESS_KEY_ID)),-u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY)) \
		$(PY) -m model_build.retrain --archive $(or $(ARCHIVE),.cache/archive) --days $(or $(DAYS),30) \
		--epochs $(or $(EPOCHS),2) --local-stack .cache/local-stack.json $(RETRAIN_ARGS) || code=$$?; \
	case $$code in \
		0) ;; \
		3) echo "retrain: the gate refused the candidate (exit 3); the live model stays" ;; \
		4) echo "retrain: not enough data in the window (exit 4); nothing published (locally: make demo or make demo-loop fills the archive)" ;; \
		*) exit $$code ;; \
	esac

demo-loop: venv
	$(PY) -m demo.loop $(if $(EPOCHS),--epochs $(EPOCHS))
