# The README's commands. CI runs `.ci/run`, which calls `make test` and `make test-kafka`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-kafka kafka-deps test-unit test-integration test-deps lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# $(call debian,COMMAND:PACKAGE ...): install each PACKAGE whose COMMAND is missing
# (apt-get, as root or through sudo).
debian = @missing=""; \
	for pair in $(1); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair\#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

## install: create .venv and install the project (gives .venv/bin/autopilot)
install: $(STAMP)

## demo: replay a real failure through the whole pipeline (embedded broker)
demo: install
	$(VENV)/bin/autopilot demo

## test-deps: the programs the integration tests run (Debian packages redis-server, kcat,
## prometheus, curl and openssl)
test-deps:
	$(call debian,redis-server:redis-server kcat:kcat prometheus:prometheus curl:curl openssl:openssl)

## test: install, provide what the tests need, run every test on the embedded broker
## (the fault tests, marked `kafka`, need Apache Kafka: `make test-kafka`)
test: install test-deps
	$(PY) -m pytest -m "not kafka"

## kafka-deps: a JDK and Maven for scripts/apache-kafka.sh (Debian packages when missing)
kafka-deps:
	$(call debian,java:default-jdk-headless mvn:maven)

## test-kafka: a fresh single-node Apache Kafka (KRaft, KAFKA_PORT, default 9092), the
## integration suite and the fault tests on it, then Kafka is stopped
test-kafka: install test-deps kafka-deps
	scripts/apache-kafka.sh clean
	scripts/apache-kafka.sh start
	AUTOPILOT_TEST_BROKER=kafka $(PY) -m pytest -m "not no_broker" tests/integration; \
	  rc=$$?; scripts/apache-kafka.sh stop; exit $$rc

test-unit: install
	$(PY) -m pytest tests/unit

test-integration: install test-deps
	$(PY) -m pytest tests/integration

lint: install
	$(VENV)/bin/ruff check autopilot agents tables tests

clean:
	-scripts/apache-kafka.sh clean
	rm -rf $(VENV) build *.egg-info autopilot-data demo-summary.json
