# rtlibvirt: set up, demo, test.  Run as root (or with sudo) on Debian 12.
#   make demo   install what is missing, then define examples/plc.yaml on libvirt's test driver
#   make test   install what is missing, start libvirtd, then lint, type-check and run every test
#   make docs   regenerate the key and check-code tables in docs/ from the code

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: all setup demo test lint unit daemon bench docs clean

all: test

$(STAMP): pyproject.toml setup.cfg scripts/install-deps
	scripts/install-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[host,test]'
	touch $@

setup: $(STAMP)

demo: setup
	$(BIN)/rtlibvirt define examples/plc.yaml --connect test:///default --show-xml

daemon: setup
	scripts/libvirtd-up

lint: setup
	$(BIN)/ruff check rtlibvirt tests bench
	$(BIN)/ruff format --check rtlibvirt tests bench
	$(BIN)/mypy rtlibvirt

unit: setup
	$(BIN)/python -m pytest -q

test: setup daemon lint
	RTLIBVIRT_REQUIRE_DAEMON=1 $(BIN)/python -m pytest -q

docs: setup
	$(BIN)/python -m rtlibvirt.cli.docs docs

bench: daemon
	scripts/install-deps --bench
	$(BIN)/python bench/render_vs_virtinstall.py
	$(BIN)/python bench/import_floor.py
	$(BIN)/python bench/placement.py
	$(BIN)/python bench/facts.py
	$(BIN)/python bench/hook.py
	$(BIN)/python bench/kthreads.py
	$(BIN)/python bench/big_host.py
	$(BIN)/python bench/start_stop.py
	flock /run/lock/rtlibvirt-tests.lock $(BIN)/python bench/noise.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
