# The README's commands. CI runs `.ci/run`, which calls `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-unit test-integration redis-server lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## install: create .venv and install the project (gives .venv/bin/autopilot)
install: $(STAMP)

## demo: replay a real failure through the whole pipeline (embedded broker)
demo: install
	$(VENV)/bin/autopilot demo

## redis-server: make sure the redis-server binary is there (Debian package)
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }

## test: install, provide what the tests need, run every test
test: install redis-server
	$(PY) -m pytest

test-unit: install
	$(PY) -m pytest tests/unit

test-integration: install redis-server
	$(PY) -m pytest tests/integration

lint: install
	$(VENV)/bin/ruff check autopilot agents tables tests

clean:
	rm -rf $(VENV) build *.egg-info autopilot-data demo-summary.json
