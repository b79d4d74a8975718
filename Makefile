# WhatsChat: `make run` starts the server, `make test` runs every test.
# Both create what they need (a virtualenv in .venv, npm packages for the Node tests, and for
# `make test` redis-server and Chromium); `make check` is the quick loop beside `make test`.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# Every dependency pinned with hashes (`make lock` writes them): serving, and serving plus the `test` extra.
SERVE_LOCK := requirements.lock
TEST_LOCK := requirements-test.lock
# A stamp per lock installed, named after the lock's and setup.cfg's content, so a changed lock reinstalls.
# `make run` and `make test` share .venv: the locks pin the same versions, so either installs on the other.
SERVE_STAMP := $(VENV)/.installed-serve-$(shell cat $(SERVE_LOCK) setup.cfg | cksum | cut -d' ' -f1)
TEST_STAMP := $(VENV)/.installed-test-$(shell cat $(TEST_LOCK) setup.cfg | cksum | cut -d' ' -f1)
NODE_STAMP := tests/node/node_modules/.installed
FERRETDB := .cache/ferretdb/ferretdb
# the web client's Socket.IO library, copied from the npm package (web/package-lock.json) into web/vendor/
WEB_BUNDLE := web/vendor/socket.io.esm.min.js
# the lock tool, pinned so that `make lock` gives the same files everywhere
UV_VERSION := 0.13.10
# what `make check` leaves out (markers in setup.cfg): tests that need Node, Chromium or redis-server, and
# slow ones; tests/browser needs the web client that npm builds; and the app suites' FerretDB half (the
# store suites still run on FerretDB). The rest runs on every core (pytest-xdist).
CHECK_ARGS := -m 'not node and not browser and not redis and not slow' --ignore=tests/browser -n auto \
	-k 'not ferretdb or store'

.PHONY: run test check screenshot soak fuzz bench lint format lock clean venv node web tools system-packages ferretdb

run: $(SERVE_STAMP) $(WEB_BUNDLE)
	$(PY) -m server serve

test: tools $(TEST_STAMP) $(NODE_STAMP) $(WEB_BUNDLE)
	$(PY) -m pytest $(PYTEST_ARGS)

# the README's picture of the web client (docs/web-client.png), taken by the browser test; a plain
# `make test` writes its picture to the ignored build/ instead, so tests never change a tracked file
screenshot: tools $(TEST_STAMP) $(WEB_BUNDLE)
	WHATSCHAT_TEST_SCREENSHOT=docs/web-client.png $(PY) -m pytest tests/browser/test_web_client.py -q

# the quick loop (about a minute): lint, then the tests that need neither Node, Chromium nor
# redis-server and are not slow
check: lint $(TEST_STAMP)
	$(PY) -m pytest $(CHECK_ARGS) $(PYTEST_ARGS)

# bounded fuzzing of a live server: schemathesis over the OpenAPI documents (`/api/v1`, then `/api`), then the
# Socket.IO fuzzer and the `/ws` fuzzer (a few minutes)
fuzz: $(TEST_STAMP)
	$(PY) -m tests.fuzz.run $(FUZZ_ARGS)

# the realtime guarantees checked against their model at full size (tests/realtime_model.py): 10,000
# operations by 50 devices over 3 processes on one Redis, with no fault, with Redis restarted midway, and
# with one process SIGKILLed midway (a few minutes); SOAK_ARGS adds or overrides options (--seed 7)
soak: tools $(TEST_STAMP)
	for chaos in none redis kill; do \
	  $(PY) -m tests.realtime_model --operations 10000 --devices 50 --users 20 --processes 3 --groups 5 \
	    --private_chats 10 --workers 10 --seconds 300 --chaos $$chaos $(SOAK_ARGS) || exit 1; \
	done

# WhatsChat and a bare python-socketio server under the same load (server on CPU 0, load on CPU 1);
# prints the table and writes docs/performance.md (about 10 minutes)
bench: $(TEST_STAMP)
	$(PY) -m bench.run $(BENCH_ARGS)

# ruff, then mypy (configured in setup.cfg: what it checks, strict on models/ and schemas/; cached in .mypy_cache)
lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(TEST_STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

venv: $(TEST_STAMP)

# Exact versions and hashes resolved from setup.cfg for any platform; pins already in the locks are kept
# unless asked: `make lock LOCK_ARGS=--upgrade`, or `LOCK_ARGS='--upgrade-package python-socketio'`.
# The serving lock is constrained by the test lock, so both pin the same versions.
COMPILE = $(VENV)/bin/uv pip compile setup.cfg --quiet --universal --generate-hashes --custom-compile-command 'make lock'
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet uv==$(UV_VERSION)
	$(COMPILE) --extra test -o $(TEST_LOCK) $(LOCK_ARGS)
	$(COMPILE) -c $(TEST_LOCK) -o $(SERVE_LOCK) $(LOCK_ARGS)

# $(1): serve or test. Installs the lock (the stamp's first prerequisite) as is, then the project itself.
define install
test -x $(PY) || $(PYTHON) -m venv $(VENV)
$(PIP) install --quiet --require-hashes -r $<
$(PIP) install --quiet --no-deps -e .
rm -f $(VENV)/.installed-$(1)-*
touch $@
endef

$(SERVE_STAMP): $(SERVE_LOCK) setup.cfg
	$(call install,serve)

$(TEST_STAMP): $(TEST_LOCK) setup.cfg
	$(call install,test)

# What `make test` needs from the system. Each tool is a prerequisite here; one to build gets a target
# of its own and joins this line.
tools: system-packages ferretdb

# FerretDB 1.24, a MongoDB wire-protocol server on SQLite, for the MongoDB backend's tests
# (tests/ferretdb_support.py): built with Go from tools/ferretdb, whose go.sum pins every module, into the
# ignored .cache/ (Go's own caches make a rebuild in another clone take seconds)
ferretdb: $(FERRETDB)

$(FERRETDB): tools/ferretdb/main.go tools/ferretdb/go.mod tools/ferretdb/go.sum
	@command -v go >/dev/null || { echo "make test needs Go to build FerretDB for the MongoDB tests: https://go.dev/dl/" >&2; exit 1; }
	mkdir -p $(dir $@)
	cd tools/ferretdb && GOFLAGS=-mod=readonly go build -trimpath -o $(CURDIR)/$@ .

# redis-server (tests/redis_support.py) and Debian's Chromium, since Playwright must never download a
# browser (tests/browser/): installed with apt-get when run as root, else a message names the packages.
system-packages:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing$$missing with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else \
		echo "make test needs the Debian package(s)$$missing: apt-get install$$missing (as root)" >&2; \
		exit 1; \
	fi

node: $(NODE_STAMP)

$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# the web client served at / (see web/): npm ci, then copy socket.io-client's browser bundle
web: $(WEB_BUNDLE)

$(WEB_BUNDLE): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	mkdir -p web/vendor
	cp web/node_modules/socket.io-client/dist/socket.io.esm.min.js \
	   web/node_modules/socket.io-client/dist/socket.io.esm.min.js.map web/vendor/
	touch $@

clean:
	rm -rf $(VENV) tests/node/node_modules .pytest_cache .ruff_cache .mypy_cache web/node_modules web/vendor .cache
