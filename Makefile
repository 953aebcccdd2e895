# Self-documenting: every target with a `## comment` is listed by `make help` (the default goal).
# Each target sets itself up (venv, pinned install, data fetch) and can be rerun safely.

PYTHON ?= python3.11
VENV ?= .venv
UV_VERSION ?= 0.13.9
DEMO_WEEK ?= 28
DEMO_CHALLENGER_WEEK ?= 20
DEMO_RATE ?= 300
DEMO_TRAFFIC_RATE ?= 0.2
DEMO_SIM_ARGS ?=
DRILL_WEEK ?= 31
DEMO_SERVE ?= 1
PORT ?= 3000
PROMETHEUS_PORT ?= 9090
ALERTMANAGER_PORT ?= 9093
AIRFLOW_PORT ?= 8080
AIRFLOW_VENV ?= .venv-airflow
BACKFILL_FROM ?= 1997-09-22
BACKFILL_TO ?= 1998-04-27
BACKFILL_DIR ?= var/backfill
BACKFILL_PORT ?= 8090
PYTEST_ARGS ?=
# The tests reuse the wheel `make data` downloaded instead of fetching their own copy.
export RECSYS_TEST_CACHE ?= $(CURDIR)/data/cache
# Spinning OpenBLAS/OpenMP thread pools starve each other on small machines (2 cores: a LambdaRank fit
# 70x slower); the `recsys` CLI sets the same defaults, these cover pytest and the benchmark.
export OPENBLAS_NUM_THREADS ?= 1
export OMP_WAIT_POLICY ?= PASSIVE

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RECSYS := $(BIN)/recsys
AIRFLOW_BIN := $(AIRFLOW_VENV)/bin
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
TOOLS_VENV ?= .venv-tools
TOOLS_BIN := $(TOOLS_VENV)/bin
TOOLS_STAMP := $(TOOLS_VENV)/.installed
# the embedded Airflow (plugins/recsys_airflow/local.py): this project's DAGs, their runner and notifiers
AIRFLOW_LOCAL := PYTHONPATH=$(CURDIR)/plugins $(AIRFLOW_BIN)/python -m recsys_airflow.local
# the same Airflow driving two backfills (plugins/recsys_airflow/backfill.py)
AIRFLOW_BACKFILL := PYTHONPATH=$(CURDIR)/plugins $(AIRFLOW_BIN)/python -m recsys_airflow.backfill
BACKFILL_ROOT = $(abspath $(BACKFILL_DIR))

.DEFAULT_GOAL := help
.PHONY: help setup data demo loop serve monitoring bento repro unit test test-slow test-all lint bench lock bento-lock clean \
  airflow-setup airflow airflow-lock backfill tools-setup tools-lock first-answer images deploy-check

help: ## Show the targets
	@echo "Usage: make <target>   (PYTHON=$(PYTHON), VENV=$(VENV))"
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z_-]+:.*?## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(STAMP) ## Create the venv and install the pinned requirements + recsys (skipped when up to date)

# Bytecode is cached as modules are first imported: uv installs none, and with PYTHONDONTWRITEBYTECODE set (as on
# CI machines) nothing would cache it, so every process would recompile its imports from source (importing Great
# Expectations: 7 s without .pyc, 2.7 s with them). Compiling the whole venv at install time instead took 145 s of
# a 2-core machine, more than half of `make demo`'s way to its first served answer; the modules a run imports are
# a fraction of it, and each is compiled once, by the first process that needs it.
unexport PYTHONDONTWRITEBYTECODE

# Rebuilt only when requirements.txt or pyproject.toml is newer than the stamp.
$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
	  echo "error: $(PYTHON) not found. Install Python 3.11 or run: make $(MAKECMDGOALS) PYTHON=/path/to/python3.11" >&2; \
	  exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { \
	  echo "error: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'), need 3.11" >&2; \
	  exit 1; }
	@if [ -x $(BIN)/python ] && ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
	  echo "$(VENV) is not a Python 3.11 venv: recreating it"; rm -rf $(VENV); fi
	@[ -x $(BIN)/python ] || { echo "creating $(VENV)"; $(PYTHON) -m venv $(VENV); } || { \
	  echo "error: '$(PYTHON) -m venv' failed (on Debian/Ubuntu: apt-get install python3.11-venv)" >&2; exit 1; }
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || { \
	  echo "error: $(VENV) has no pip (on Debian/Ubuntu: apt-get install python3.11-venv, then rm -rf $(VENV))" >&2; \
	  exit 1; }
	@echo "installing pinned requirements into $(VENV)"
	@if $(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION) \
	    && $(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt \
	    && $(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e . ; then :; \
	else \
	  echo "uv failed: falling back to pip (slower)" >&2; \
	  $(BIN)/python -m pip install --disable-pip-version-check -r requirements.txt \
	    && $(BIN)/python -m pip install --disable-pip-version-check --no-deps -e . ; \
	fi
	@touch $(STAMP)

# Airflow lives in its own venv (requirements-airflow.txt): its pins never meet the library's. Tasks reach the
# library through plugins/recsys_airflow's runner (this repo's .venv/bin/recsys as a subprocess).
airflow-setup: $(AIRFLOW_STAMP) ## Create the Airflow venv (.venv-airflow: Airflow 3.3.2 + providers, pinned)

$(AIRFLOW_STAMP): requirements-airflow.txt $(STAMP)
	@if [ -x $(AIRFLOW_BIN)/python ] && ! $(AIRFLOW_BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
	  echo "$(AIRFLOW_VENV) is not a Python 3.11 venv: recreating it"; rm -rf $(AIRFLOW_VENV); fi
	@[ -x $(AIRFLOW_BIN)/python ] || { echo "creating $(AIRFLOW_VENV)"; $(PYTHON) -m venv --without-pip $(AIRFLOW_VENV); }
	@echo "installing pinned Airflow requirements into $(AIRFLOW_VENV)"
	@$(BIN)/uv pip install --quiet --python $(AIRFLOW_BIN)/python -r requirements-airflow.txt
	@touch $@

# The deployment checks (hadolint, check-jsonschema, kubernetes-validate, python-hcl2, checkov, bandit,
# detect-secrets) in their own venv: checkov's pins never meet the library's.
tools-setup: $(TOOLS_STAMP) ## Create the checks venv (.venv-tools: linters and offline validators for docker/, k8s/, terraform/, workflows)

$(TOOLS_STAMP): requirements-tools.txt tests/deploy/k8s/package-lock.json $(STAMP)
	@if [ -x $(TOOLS_BIN)/python ] && ! $(TOOLS_BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
	  echo "$(TOOLS_VENV) is not a Python 3.11 venv: recreating it"; rm -rf $(TOOLS_VENV); fi
	@[ -x $(TOOLS_BIN)/python ] || { echo "creating $(TOOLS_VENV)"; $(PYTHON) -m venv --without-pip $(TOOLS_VENV); }
	@echo "installing pinned check tools into $(TOOLS_VENV)"
	@$(BIN)/uv pip install --quiet --python $(TOOLS_BIN)/python -r requirements-tools.txt
	@# two packages ship the detect_secrets module (detect-secrets, and checkov's fork bc-detect-secrets); which one's
	@# files win depended on uv's install order, and detect-secrets 1.5.0 flags .env.example's first comment: the
	@# fork, which the secret checks were written against, is reinstalled last
	@$(BIN)/uv pip install --quiet --python $(TOOLS_BIN)/python --no-deps --reinstall \
	  "$$(grep -E '^bc-detect-secrets==' requirements-tools.txt)"
	@# the CRD models the Kubernetes checks validate Rollouts and ServiceMonitors with (npm, locked)
	@if command -v npm >/dev/null 2>&1; then mkdir -p $(TOOLS_VENV)/node \
	  && cp tests/deploy/k8s/package.json tests/deploy/k8s/package-lock.json $(TOOLS_VENV)/node/ \
	  && npm ci --silent --no-audit --no-fund --prefix $(TOOLS_VENV)/node; \
	else echo "note: npm missing, so the CRD checks of tests/deploy/test_k8s.py will be skipped (apt-get install npm)" >&2; fi
	@touch $@

tools-lock: setup ## Recompile requirements-tools.txt from requirements-tools.in (uv, Python 3.11)
	$(BIN)/uv pip compile requirements-tools.in -o requirements-tools.txt --python-version 3.11

airflow: setup airflow-setup data ## Airflow (api-server, scheduler, dag-processor, triggerer; SQLite, LocalExecutor) on AIRFLOW_PORT
	$(AIRFLOW_LOCAL) --home $(CURDIR)/var/airflow --port $(AIRFLOW_PORT)

# Its own data and var dirs under BACKFILL_DIR (the demo's data/ and var/ stay untouched); the metadata DB must not
# be SQLite: export RECSYS_AIRFLOW_DB_URL (e.g. postgresql+psycopg2://postgres@127.0.0.1:5432/recsys_backfill).
backfill: setup airflow-setup data ## Replay BACKFILL_FROM..BACKFILL_TO in Airflow: backfill ingest_and_validate, then retrain, then the timeline
	@mkdir -p $(BACKFILL_ROOT)/data/raw
	@[ -d $(BACKFILL_ROOT)/data/raw/ml-100k ] || cp -r data/raw/ml-100k $(BACKFILL_ROOT)/data/raw/
	RECSYS_DATA_DIR=$(BACKFILL_ROOT)/data RECSYS_VAR_DIR=$(BACKFILL_ROOT)/var \
	  $(AIRFLOW_BACKFILL) --home $(BACKFILL_ROOT)/airflow --port $(BACKFILL_PORT) --from $(BACKFILL_FROM) --to $(BACKFILL_TO)

airflow-lock: setup ## Recompile requirements-airflow.txt from requirements-airflow.in (uv, Python 3.11)
	$(BIN)/uv pip compile requirements-airflow.in -o requirements-airflow.txt --python-version 3.11

data: setup ## Fetch MovieLens-100K (recbole==1.2.1 wheel from PyPI, cached and checksummed)
	$(RECSYS) data fetch

# The first recommendation is served as soon as a champion exists (validate, train, gate), then the rest runs: the
# failure drill, a challenger, the RecBole evaluation, the Airflow env, the live loop. DEMO_STARTED is when make
# read this file (handed down to the sub-makes), so the figure printed includes the installs.
ifndef DEMO_STARTED
DEMO_STARTED := $(shell date +%s)
endif
export DEMO_STARTED
demo: setup data ## Pipeline end to end (validate, train, gate + promote, a served recommendation, drill, challenger, evaluate), then the live loop (`make loop`)
	$(RECSYS) data replay --all
	$(RECSYS) validate --all
	$(RECSYS) train --as-of-week $(DEMO_WEEK)
	$(RECSYS) registry gate
	@$(MAKE) --no-print-directory first-answer
	@echo "failure drill: corrupt week $(DRILL_WEEK)'s batch; validation must quarantine it and keep the store as it was"
	$(RECSYS) data inject --week $(DRILL_WEEK) --fault rating_out_of_range
	! $(RECSYS) validate --week $(DRILL_WEEK)
	$(RECSYS) data replay --week $(DRILL_WEEK)
	@echo "a weaker challenger for the A/B test: trained as of week $(DEMO_CHALLENGER_WEEK), without the $$(( $(DEMO_WEEK) - $(DEMO_CHALLENGER_WEEK) )) newest weeks"
	$(RECSYS) train --as-of-week $(DEMO_CHALLENGER_WEEK)
	$(RECSYS) registry list
	$(RECSYS) evaluate --protocol recbole --out var/reports/recbole.json
	@$(MAKE) --no-print-directory airflow-setup monitoring-tools
	@echo
	@echo "Results:"
	@echo "  weekly batches   data/batches/week=WW/ -> validated store data/store/, rejected: data/quarantine/"
	@echo "  Data Docs        var/validation/data_docs/index.html"
	@echo "  model bundles    var/models/week=WW/ (manifest.json, metrics.json)"
	@echo "  gate decisions   var/registry/decisions/*.json   audit log: $(RECSYS) registry history"
	@echo "  notifications    $(RECSYS) notify list   (stored in var/notifications/notifications.db; RECSYS_NOTIFY adds slack, email)"
	@echo "  RecBole protocol var/reports/recbole.json"
	@echo "  MLflow UI        $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/var/mlflow/mlflow.db --port 5000"
	@echo "                   then open http://127.0.0.1:5000 (runs, plots, the content-ranker registry)"
	@echo "  DVC pipeline     make repro   (fetch -> ingest -> validate -> train -> evaluate, params.yaml)"
	@echo "  full benchmark   make bench  (both protocols, every backtest cut; about 10-15 minutes)"
	@echo
	@$(MAKE) --no-print-directory loop

# The champion served by a real service on PORT, checked as a deployment checks it (`recsys service smoke`), then
# stopped again (the live loop serves champion and challenger side by side later).
first-answer: setup
	@echo "serving the champion on http://127.0.0.1:$(PORT) for a first recommendation"
	@$(RECSYS) serve --port $(PORT) > var/first-answer.log 2>&1 & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null' EXIT; \
	$(RECSYS) service smoke --url http://127.0.0.1:$(PORT) --user 1 --n 5 --wait 120 \
	  || { tail -20 var/first-answer.log; exit 1; }; \
	echo "first recommendation served $$(( $$(date +%s) - $(DEMO_STARTED) )) s after make started (installs included)"

# The service runs in the background while the replay plays against it; the trap stops it however this ends.
loop: setup data ## Serve champion vs challenger (configs/ab-demo.yaml), replay the weeks after the cut, then A/B, CTR, drift
	@export RECSYS_EXPERIMENT_FILE="$(CURDIR)/configs/ab-demo.yaml" RECSYS_TRAFFIC_RATE=$(DEMO_TRAFFIC_RATE) \
	  RECSYS_SERVICE_URL=http://127.0.0.1:$(PORT) \
	  RECSYS_ADMIN_TOKEN=$${RECSYS_ADMIN_TOKEN:-$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(24))')}; \
	echo "starting the service on http://127.0.0.1:$(PORT) with the A/B experiment configs/ab-demo.yaml"; \
	$(RECSYS) serve --port $(PORT) & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null' EXIT; trap 'exit 130' INT TERM; \
	$(RECSYS) simulate --url http://127.0.0.1:$(PORT) --wait 180 --rate $(DEMO_RATE) $(DEMO_SIM_ARGS) || exit 1; \
	$(RECSYS) monitor ctr || exit 1; \
	$(RECSYS) monitor live --window-minutes 1440 || exit 1; \
	$(RECSYS) ab report || exit 1; \
	$(RECSYS) drift --last 28d || exit 1; \
	echo; echo "  A/B report       var/reports/ab/demo-ab/<end>/report.html (and ctr.png); decide: $(RECSYS) ab decide"; \
	echo "  drift report     var/monitoring/drift/<time>/report.html; CTR check: var/monitoring/ctr/latest.json"; \
	if [ "$(DEMO_SERVE)" = "1" ]; then \
	  if command -v prometheus >/dev/null 2>&1; then \
	    $(RECSYS) monitor stack --target 127.0.0.1:$(PORT) --prometheus-port $(PROMETHEUS_PORT) \
	      --alertmanager-port $(ALERTMANAGER_PORT) & mon=$$!; \
	    trap 'kill $$pid $$mon 2>/dev/null; wait $$pid $$mon 2>/dev/null' EXIT; \
	    echo "  Prometheus       http://127.0.0.1:$(PROMETHEUS_PORT)/alerts (the rules of monitoring/prometheus)"; \
	    echo "  Alertmanager     http://127.0.0.1:$(ALERTMANAGER_PORT) (e-mail/Slack: RECSYS_SMTP_*, RECSYS_SLACK_WEBHOOK_URL)"; \
	  else echo "  (Prometheus is not installed: make monitoring-tools, then make monitoring)"; fi; \
	  if [ -x $(AIRFLOW_BIN)/python ]; then \
	    $(AIRFLOW_LOCAL) --home $(CURDIR)/var/airflow --port $(AIRFLOW_PORT) & af=$$!; \
	    trap 'kill $$pid $$mon $$af 2>/dev/null; wait $$pid $$mon $$af 2>/dev/null' EXIT; \
	    echo "  Airflow          http://127.0.0.1:$(AIRFLOW_PORT) (its login is printed when it is up; DAGs: make airflow)"; \
	  else echo "  (Airflow is not installed: make airflow-setup, then make airflow)"; fi; \
	  echo; echo "The service keeps running on http://127.0.0.1:$(PORT) (Ctrl-C stops it; make demo DEMO_SERVE=0 skips it)"; \
	  wait $$pid; fi

serve: setup ## Run the recommendation service (BentoML) on the registry champion, port 3000 (PORT=N)
	$(RECSYS) serve --port $(PORT)

monitoring: setup monitoring-tools ## Prometheus (:9090, the rules) and Alertmanager (:9093) watching the service on PORT
	$(RECSYS) monitor stack --target 127.0.0.1:$(PORT) --prometheus-port $(PROMETHEUS_PORT) \
	  --alertmanager-port $(ALERTMANAGER_PORT)

bento: setup ## Build the Bento with the champion baked in (no Docker needed; `bentoml containerize` needs it)
	$(RECSYS) bake --out bentos/bundle
	$(BIN)/python -m pip wheel --quiet --no-deps -w dist .
	BENTOML_HOME=$${BENTOML_HOME:-$$HOME/.cache/recsys/bentoml} $(BIN)/bentoml build bentos

repro: setup ## DVC pipeline (dvc.yaml, params.yaml): runs only the stages whose inputs changed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

unit: setup ## Fast gate: tests/unit + tests/conformance (no data, no servers; seconds)
	$(BIN)/python -m pytest -q tests/unit tests/conformance $(PYTEST_ARGS)

# $(call apt-tools,<commands wanted on PATH>,<Debian packages>,<what is skipped without them>): install them as
# root (CI runs as root), or say what is skipped.
define apt-tools
	@if (for c in $(1); do command -v $$c >/dev/null 2>&1 || exit 1; done); then :; \
	elif [ "$$(id -u)" != 0 ]; then \
	  echo "note: $(1) missing and not root, so $(3) will be skipped (apt-get install $(2))" >&2; \
	else \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(2) || exit 1; \
	fi
endef

# Prometheus, Alertmanager, promtool and amtool for `make monitoring` and the tests of monitoring/. Only the
# binaries are wanted: a daemon the package's install started is stopped.
.PHONY: monitoring-tools browser-tools
monitoring-tools: ## Install Prometheus, Alertmanager, promtool, amtool (apt-get, as root) unless on PATH
	$(call apt-tools,promtool amtool prometheus prometheus-alertmanager,prometheus prometheus-alertmanager,the tests that run them)
	@if [ "$$(id -u)" = 0 ] && [ -d /run/systemd/system ]; then \
	  systemctl disable --now prometheus prometheus-alertmanager 2>/dev/null || true; fi

# Headless Chromium and its driver (Debian's packages) for the Airflow UI test.
browser-tools: ## Install Chromium and chromedriver (apt-get, as root) unless on PATH
	$(call apt-tools,chromium chromedriver,chromium chromium-driver,the Airflow UI test)

test: setup airflow-setup tools-setup data monitoring-tools browser-tools ## The test suite without the slow tests (unit to real servers)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-slow: setup airflow-setup tools-setup data monitoring-tools browser-tools ## Only the slow tests (DVC end to end, every real week, a real bentoml serve)
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

test-all: setup airflow-setup tools-setup data monitoring-tools browser-tools ## Every test, including the slow ones
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Offline: this needs no Docker, no cluster and no cloud (tests/deploy/; also part of `make test`).
deploy-check: setup tools-setup monitoring-tools ## Check docker/, compose, k8s/, terraform/, workflows; bandit, detect-secrets (offline)
	$(BIN)/python -m pytest -q tests/deploy $(PYTEST_ARGS)

IMAGE_TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
# Needs a Docker engine (the Bento's containerize needs BuildKit); this repository's CI validates the files instead.
images: setup ## Build recsys-pipeline, recsys-airflow and recsys-serving:IMAGE_TAG (Docker with BuildKit)
	docker build -f docker/pipeline.Dockerfile --build-arg GIT_SHA=$$(git rev-parse HEAD) -t recsys-pipeline:$(IMAGE_TAG) .
	docker build -f docker/airflow.Dockerfile --build-arg GIT_SHA=$$(git rev-parse HEAD) -t recsys-airflow:$(IMAGE_TAG) .
	rm -rf dist && $(BIN)/python -m pip wheel --quiet --no-deps -w dist .
	BENTOML_HOME=$${BENTOML_HOME:-$$HOME/.cache/recsys/bentoml} $(BIN)/bentoml build bentos
	BENTOML_HOME=$${BENTOML_HOME:-$$HOME/.cache/recsys/bentoml} $(BIN)/bentoml containerize recommender:latest \
	  -t recsys-serving:$(IMAGE_TAG)

lint: setup ## ruff, mypy (recsys, bentos, benchmarks) and the layering contract (import-linter)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: setup data ## Offline quality benchmark, both protocols -> bench-results/offline_quality.json
	$(BIN)/python -m benchmarks.offline_quality --json bench-results/offline_quality.json

lock: setup ## Recompile requirements.txt from requirements.in, then the Bento's packages (uv, Python 3.11)
	$(BIN)/uv pip compile requirements.in -o requirements.txt --python-version 3.11
	@$(MAKE) --no-print-directory bento-lock

# The Bento installs bentos/requirements.txt: the serving packages of bentos/requirements.in, with the project's
# lock as constraints, so each pin is requirements.txt's (tests/unit/test_bento_requirements.py checks it).
bento-lock: setup ## Recompile bentos/requirements.txt (the Bento's packages) against requirements.txt
	$(BIN)/uv pip compile bentos/requirements.in -c requirements.txt -o bentos/requirements.txt --python-version 3.11

clean: ## Remove caches, run outputs (var/, bench-results/) and replayed batches; keeps .venv and the raw data
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis .import_linter_cache bench-results var data/batches data/store data/quarantine \
	  reports/temporal_backtest reports/recbole
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
