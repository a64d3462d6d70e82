# CanWatch. `make run` starts the whole stack on http://localhost:9004; `make test` runs
# every test. Both install what is missing: the Python environment (.venv, pinned by
# requirements.lock) and, through apt-get when root, Debian's redis-server and nginx.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
READY := $(VENV)/.ready
PYTEST := $(PY) -m pytest -p no:cacheprovider

.PHONY: run stop test unit integration e2e endtoend lint bench-api bench-gate bench-scale system-deps test-deps clean

$(READY): pyproject.toml requirements.lock requirements-dev.lock
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { scripts/need.sh "__venv__:python3-venv" && rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

system-deps:
	@scripts/need.sh redis-server:redis-server redis-cli:redis-tools nginx:nginx

# promtool checks the Prometheus config and alert rules in the tests.
test-deps: system-deps
	@scripts/need.sh promtool:prometheus

run: $(READY) system-deps
	$(PY) -m authsvc stack

stop: $(READY)
	$(PY) -m authsvc stack --stop

test: lint unit integration e2e

lint: $(READY)
	$(VENV)/bin/ruff check authsvc tests bench
	$(VENV)/bin/ruff format --check authsvc tests bench
	$(VENV)/bin/mypy

unit: $(READY)
	$(PYTEST) tests/unit -q

integration: $(READY) test-deps
	$(PYTEST) tests/integration -q

e2e: $(READY) system-deps
	$(PYTEST) tests/e2e -q

# Against any deployment: HOST=http://host:port make endtoend
endtoend: $(READY) system-deps
	$(PYTEST) tests/e2e -q

bench-api: $(READY) system-deps
	@scripts/need.sh wrk:wrk
	$(PY) bench/api.py

bench-gate: $(READY) system-deps
	@scripts/need.sh wrk:wrk
	$(PY) bench/gate.py

# Memory at a million users, throughput vs number of users, Cluster vs single Redis.
bench-scale: $(READY) system-deps
	@scripts/need.sh wrk:wrk
	$(PY) bench/scale.py

clean:
	rm -rf $(VENV) .run build *.egg-info
