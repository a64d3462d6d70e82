# CanWatch. `make run` starts the whole stack on http://localhost:9004; `make test` runs
# every test. Both install what is missing: the Python environment (.venv, pinned by
# requirements.lock) and, through apt-get when root, Debian's redis-server and nginx
# (and for the tests ffmpeg, chromium and chromium-driver).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
READY := $(VENV)/.ready
PYTEST := $(PY) -m pytest -p no:cacheprovider
# `make` alone sets up the Python environment, as before any target was added.
.DEFAULT_GOAL := $(READY)

# The docs site: the settings page generated from `authsvc settings`, then a strict build
# (a broken link or a page missing from the navigation fails it) into site/.
docs: $(READY)
	$(PY) -m authsvc settings --write-docs docs/settings.md
	$(VENV)/bin/mkdocs build --strict --site-dir site

.PHONY: docs k8s-config vendor-players run stop test test-stress unit integration e2e suite network endtoend lint bench-api bench-gate bench-scale bench-links soak system-deps test-deps clean

# Byte-compiled once, on both cores: pip compiles one file at a time (half the set-up's
# time), and with PYTHONDONTWRITEBYTECODE set, as it may be, a venv without .pyc files has
# every process (each authsvc the tests start) compile all it imports. Like pip's own,
# this compile passes over a file that does not compile.
$(READY): pyproject.toml requirements.lock requirements-dev.lock
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { scripts/need.sh "__venv__:python3-venv" && rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --disable-pip-version-check --no-compile -r requirements-dev.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-compile --no-deps -e .
	@$(PY) -m compileall -q -j 0 $(VENV)/lib >/dev/null || true
	@touch $@

# OpenResty's core for Debian's nginx, for the lease tokens that nginx checks itself
# (AUTHSVC_LEASE_TOKEN_S, make run too): the Lua module, its development kit, resty.core.
LUA := /usr/lib/nginx/modules/ndk_http_module.so:libnginx-mod-http-ndk \
	/usr/lib/nginx/modules/ngx_http_lua_module.so:libnginx-mod-http-lua \
	/usr/share/lua/5.1/resty/core.lua:lua-resty-core /usr/share/lua/5.1/resty/lrucache.lua:lua-resty-lrucache

system-deps:
	@scripts/need.sh redis-server:redis-server redis-cli:redis-tools nginx:nginx $(LUA)

# promtool checks the Prometheus config and alert rules in the tests; ffmpeg is the HLS
# player of the end-to-end tests, chromium (driven through chromedriver) the browser;
# curl speaks HTTP/2 to the edge; prometheus scrapes the stack in an end-to-end test;
# ip (iproute2) makes the network tests' hosts and iptables their partitions.
test-deps: system-deps
	@scripts/need.sh $(LUA) promtool:prometheus prometheus:prometheus ffmpeg:ffmpeg chromium:chromium chromedriver:chromium-driver curl:curl ip:iproute2 iptables:iptables

run: $(READY) system-deps
	$(PY) -m authsvc stack

stop: $(READY)
	$(PY) -m authsvc stack --stop

test: lint suite network

# `make test` three times in a row while stress-ng keeps both cores busy: the suite waits
# on conditions, never on the machine's speed. stress-ng is bounded and stopped by PID.
test-stress: $(READY) test-deps
	@scripts/need.sh stress-ng:stress-ng
	@stress-ng --cpu 2 --timeout 3600 --quiet & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null' EXIT; \
	for run in 1 2 3; do echo "== make test under stress-ng --cpu 2, run $$run of 3"; \
	  $(MAKE) --no-print-directory test || exit 1; done

lint: $(READY)
	$(VENV)/bin/ruff check authsvc canwatch_edge canwatch_stack tests bench
	$(VENV)/bin/ruff format --check authsvc canwatch_edge canwatch_stack tests bench
	$(VENV)/bin/mypy

# The integration and end-to-end tests wait on servers more than they compute: on
# TEST_WORKERS processes at once (pytest-xdist), each with its own servers and share of
# the free ports; a test that needs the documented ports holds a lock while it runs. Tests
# go to whichever worker is free (xdist's default): --dist loadfile and loadgroup queue
# tests by node id, which schemathesis's cases share, and run 4 of test_openapi_contract's
# 44, without a word. `make test` runs the unit, integration and end-to-end tests as one
# run (`suite`), so that no worker idles while another finishes a layer's slowest test.
TEST_WORKERS ?= 4
PARALLEL := -n $(TEST_WORKERS)

# Alone, the unit tests are quicker in one process than with the workers' start-up.
unit: $(READY)
	$(PYTEST) tests/unit -q

integration: $(READY) test-deps
	$(PYTEST) tests/integration -q $(PARALLEL)

e2e: $(READY) test-deps
	$(PYTEST) tests/e2e -q $(PARALLEL)

suite: $(READY) test-deps
	$(PYTEST) tests/unit tests/integration tests/e2e -q $(PARALLEL)

# Redis, authsvc and nginx on test hosts (network namespaces) cut apart by iptables: as
# root (about 80 s here).
network: $(READY) test-deps
	$(PYTEST) tests/network -q

# Against any deployment: HOST=http://host:port make endtoend
endtoend: $(READY) test-deps
	$(PYTEST) tests/e2e -q

bench-api: $(READY) system-deps
	@scripts/need.sh wrk:wrk
	$(PY) bench/api.py

bench-gate: $(READY) system-deps
	@scripts/need.sh wrk:wrk valgrind:valgrind $(LUA)
	$(PY) bench/gate.py
	$(PY) bench/players.py
	$(PY) bench/instructions.py

# Memory at a million users, throughput vs number of users, Cluster vs single Redis.
bench-scale: $(READY) system-deps
	@scripts/need.sh wrk:wrk
	$(PY) bench/scale.py

# authsvc <-> Redis through a delay proxy (0, 2 and 20 ms one way): the API cycle and the
# exact gate against the direct link. A few minutes.
bench-links: $(READY) system-deps
	@scripts/need.sh wrk:wrk
	$(PY) bench/links.py

# An hour of mixed load through both gate modes and the API on a stack of its own, memory
# and answers every minute to docs/soak.csv, plotted to docs/soak.png; fails on an
# unexpected answer or memory that grows. SOAK_S shortens it, e.g. `SOAK_S=600 make soak`.
soak: $(READY) system-deps
	$(PY) bench/soak.py

# The nginx edge's ConfigMaps for Kubernetes (deploy/k8s/base/edge-config.yaml), rendered
# again after a template changes; settings on top of the base's, e.g.
#   make k8s-config K8S_SETTINGS="CANWATCH_EDGE_ORIGIN_URL=https://cdn.example.com"
k8s-config: $(READY)
	$(PY) -m canwatch_edge.k8s $(K8S_SETTINGS)

# The web players of the player page, fetched again from npm at the versions pinned in
# scripts/vendor_players.py (needs npm; `make run` and the tests do not).
vendor-players: $(READY)
	@scripts/need.sh npm:npm
	$(PY) scripts/vendor_players.py

clean:
	rm -rf $(VENV) .run build site *.egg-info
