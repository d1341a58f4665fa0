# Signoff, locally. `make demo` runs the main job; `make test` runs the tests.
# Everything is set up on first use: the virtualenv, the Python dependencies, the Kafka jars.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
KAFKA := bash deploy/kafka/kafka.sh
RUN := .data/run

# The demo runs its own throw-away broker, so it never mixes with a stack left running by `make up`.
DEMO_KAFKA := KAFKA_PORT=9192 KAFKA_CONTROLLER_PORT=9193 KAFKA_DATA_DIR=$(CURDIR)/.data/kafka-demo

.PHONY: help venv kafka-up kafka-down topics up down demo lint test bench chaos asyncapi clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## create the virtualenv and install Signoff with its dependencies

kafka-up: ## start the local Kafka broker (127.0.0.1:9092, data in .data/kafka)
	$(KAFKA) up

kafka-down: ## stop the local Kafka broker (topics and messages are kept)
	$(KAFKA) down

topics: venv kafka-up ## create Signoff's topics
	$(BIN)/signoff topics create

up: venv kafka-up topics ## start Kafka and the four services in the background
	@if [ -f $(RUN)/stack.pid ] && kill -0 $$(cat $(RUN)/stack.pid) 2>/dev/null; then \
	  echo "stack already running (pid $$(cat $(RUN)/stack.pid))"; exit 0; fi; \
	mkdir -p $(RUN); \
	nohup $(BIN)/python -m signoff.devstack $(RUN) > $(RUN)/stack.out 2>&1 & echo $$! > $(RUN)/stack.pid; \
	for _ in $$(seq 1 600); do \
	  grep -q "stack up" $(RUN)/stack.out && { cat $(RUN)/stack.out; exit 0; }; \
	  kill -0 $$(cat $(RUN)/stack.pid) 2>/dev/null || { cat $(RUN)/stack.out; exit 1; }; \
	  sleep 0.1; done; echo "stack did not start in 60s"; exit 1

down: ## stop the four services, then Kafka
	@if [ -f $(RUN)/stack.pid ]; then pid=$$(cat $(RUN)/stack.pid); kill $$pid 2>/dev/null || true; \
	  while kill -0 $$pid 2>/dev/null; do sleep 0.1; done; rm -f $(RUN)/stack.pid; echo "services stopped"; fi
	$(KAFKA) down

demo: venv ## run every path end to end on a fresh broker and print the timelines
	$(DEMO_KAFKA) $(KAFKA) reset
	$(DEMO_KAFKA) $(KAFKA) up
	KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9192 $(BIN)/python -m signoff.demo .data/demo; \
	  status=$$?; $(DEMO_KAFKA) $(KAFKA) down; exit $$status

lint: venv ## ruff (style, imports, pyflakes, bugbear) and mypy on shared/, services/, signoff/
	$(BIN)/ruff check shared services signoff tests bench
	$(BIN)/mypy

test: venv ## run the tests, then the component tests again on the real broker (throw-away brokers unless KAFKA_BOOTSTRAP_SERVERS is set)
	$(KAFKA) fetch
	$(BIN)/pytest
	$(BIN)/pytest tests/component --broker=kafka

bench: venv ## benchmarks: the auto-approve path against a bare aiokafka relay; artifact hashing
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.hashing

chaos: venv ## faults (service and broker kills) against a seeded scenario, beside a fault-free baseline: the figures (CHAOS="--seed 7")
	$(KAFKA) fetch
	$(BIN)/python -m bench.chaos $(CHAOS)

asyncapi: venv ## regenerate the AsyncAPI document of each service under docs/asyncapi/
	@mkdir -p docs/asyncapi
	for svc in validator policy review_notifier deployer; do \
	  $(BIN)/faststream docs gen --factory services.$$svc.app:create_app --yaml --out docs/asyncapi/$$svc.yaml >/dev/null; \
	  echo "docs/asyncapi/$$svc.yaml"; done

clean: down ## stop everything and delete local data (Kafka logs, model store, state)
	rm -rf .data
