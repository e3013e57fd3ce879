# The commands the README shows. Everything runs from the project's own virtualenv (.venv),
# built from the committed lock files on first use (runtime and the test tools).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-from-lock

.PHONY: demo test test-all test-fast api airflow-ui feast-ui lock clean

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON) (and Java 17 for Spark)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock -r requirements-dev.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

## The whole nightly loop on generated logs, embedded defaults (Spark local, DuckDB, SQLite, MLflow files)
demo: $(STAMP)
	$(BIN)/recsys demo

## The test suite (what CI runs); the multi-minute stack tests are in test-all
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/pytest -q -m "not heavy"

## Everything, including the stack tests marked heavy (Airflow UI in Chromium, Spark standalone
## master, Airflow + MLflow on the local Postgres, the nightly report runs)
test-all: $(STAMP)
	$(BIN)/pytest -q

## Unit tests only (skips Spark, dbt and the end-to-end DAG run)
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

## The recommendation API on http://127.0.0.1:8000 (docs at /docs). `make api RECSYS_API_HOST=0.0.0.0`
## exposes it; the app then refuses to start unless RECSYS_EVENTS_TOKEN and RECSYS_ADMIN_TOKEN are set.
## uvicorn binds the very host the app checks.
api: $(STAMP)
	RECSYS_API_HOST='$(or $(RECSYS_API_HOST),127.0.0.1)' $(BIN)/uvicorn serving.app:app --host '$(or $(RECSYS_API_HOST),127.0.0.1)' --port 8000

## Airflow UI on http://127.0.0.1:8080, same metadata as the demo. Login from RECSYS_AIRFLOW_USER /
## RECSYS_AIRFLOW_PASSWORD (admin / admin), printed every start; Ctrl-C stops every component.
## This machine only (pipeline/airflow_env.py sets AIRFLOW__API__HOST=127.0.0.1 unless it is set)
airflow-ui: $(STAMP)
	$(BIN)/python -m pipeline.airflow_env $(BIN)/airflow standalone

## Regenerate requirements.lock from requirements.in (what the docker images install), then
## requirements-dev.lock: the pins requirements-dev.in adds to it, installed within the runtime
## pins. Keeps torch without the local +cpu label.
lock:
	rm -rf /tmp/recsys-lock && $(PYTHON) -m venv /tmp/recsys-lock
	/tmp/recsys-lock/bin/pip install --quiet -r requirements.in
	/tmp/recsys-lock/bin/pip freeze | sed 's/+cpu$$//' > requirements.lock
	/tmp/recsys-lock/bin/pip install --quiet -r requirements-dev.in -c requirements.lock
	/tmp/recsys-lock/bin/pip freeze | sed 's/+cpu$$//' | grep -vxFf requirements.lock > requirements-dev.lock

clean:
	rm -rf .recsys
