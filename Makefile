# MAGNET: the two commands a fresh machine needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.magnet-installed
export QT_QPA_PLATFORM ?= offscreen
export TORCHDYNAMO_DISABLE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export HF_HUB_OFFLINE ?= 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install run test test-fast lint typecheck contracts node-deps bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=24"
	$(PIP) install -q -c constraints.txt -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

# The README's main job: the whole system on this machine.
run: install
	$(VENV)/bin/magnet devnet

# npm packages for contracts (solc-js, OpenZeppelin) and for the tests that need a
# real JSON-RPC node (anvil) or a js-libp2p peer. Skipped where npm is absent.
node-deps:
	@if command -v npm >/dev/null 2>&1; then \
	  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then \
	    npm install --no-audit --no-fund --loglevel=error; \
	    touch node_modules; fi; \
	else echo "npm not found: node-dependent tests will be skipped"; fi

contracts: node-deps
	$(PY) -m wallet.contracts.build

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy

test: install node-deps lint typecheck
	$(VENV)/bin/pytest -q --durations=25

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow" -x

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info

# The desktop bundle (PyInstaller onedir) and a Linux .deb; heavy, so not part of `make test`.
.PHONY: installer test-installer
installer: install
	$(PIP) install -q -c constraints.txt -e '.[installer]'
	QT_QPA_PLATFORM=offscreen $(PY) installer/make_icons.py
	$(PY) installer/build.py

test-installer: installer
	$(PY) installer/check_bundle.py
