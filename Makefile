# The README's commands. CI runs `.ci/run`, which calls `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-unit test-integration test-deps lint clean

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

## test-deps: the programs the integration tests run (Debian packages redis-server, kcat, prometheus)
test-deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v kcat >/dev/null 2>&1 || missing="$$missing kcat"; \
	command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

## test: install, provide what the tests need, run every test
test: install test-deps
	$(PY) -m pytest

test-unit: install
	$(PY) -m pytest tests/unit

test-integration: install test-deps
	$(PY) -m pytest tests/integration

lint: install
	$(VENV)/bin/ruff check autopilot agents tables tests

clean:
	rm -rf $(VENV) build *.egg-info autopilot-data demo-summary.json
