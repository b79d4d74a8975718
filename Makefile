# WhatsChat: `make run` starts the server, `make test` runs every test.
# Both create what they need (a virtualenv in .venv, npm packages for the Node tests).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum setup.cfg | cut -d' ' -f1)
NODE_STAMP := tests/node/node_modules/.installed
# the web client's Socket.IO library, copied from the npm package (web/package-lock.json) into web/vendor/
WEB_BUNDLE := web/vendor/socket.io.esm.min.js

.PHONY: run test fuzz bench lint format clean venv node web

run: $(STAMP) $(WEB_BUNDLE)
	$(PY) -m server serve

test: $(STAMP) $(NODE_STAMP) $(WEB_BUNDLE)
	$(PY) -m pytest $(PYTEST_ARGS)

# bounded fuzzing of a live server: schemathesis over the OpenAPI document, then the Socket.IO fuzzer
fuzz: $(STAMP)
	$(PY) -m tests.fuzz.run $(FUZZ_ARGS)

# WhatsChat and a bare python-socketio server under the same load (server on CPU 0, load on CPU 1);
# prints the table and writes docs/performance.md (about 10 minutes)
bench: $(STAMP)
	$(PY) -m bench.run $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

venv: $(STAMP)

$(STAMP): setup.cfg
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

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
	rm -rf $(VENV) tests/node/node_modules .pytest_cache .ruff_cache web/node_modules web/vendor
