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

# The broker is secured (SASL/SCRAM-SHA-512 and ACLs; kafka.sh). `make up KAFKA_PLAINTEXT=1` turns
# that off on a developer's laptop (the broker and the services say so in their logs).
KAFKA_DATA := $(CURDIR)/.data/kafka
ifeq ($(KAFKA_PLAINTEXT),1)
export KAFKA_PLAINTEXT
export KAFKA_SECURITY_PROTOCOL := PLAINTEXT
AS_ADMIN :=
else
# `signoff topics create` and `signoff acl apply` run as the admin; the services get their own
# credentials from KAFKA_CREDENTIALS_DIR (signoff/devstack.py).
AS_ADMIN := KAFKA_SASL_USERNAME=admin KAFKA_SASL_PASSWORD_FILE=$(KAFKA_DATA)/credentials/admin
endif
export KAFKA_CREDENTIALS_DIR := $(KAFKA_DATA)/credentials
ifeq ($(KAFKA_TLS),1)
# `make up KAFKA_TLS=1`: SASL_SSL, the broker's certificate checked against kafka.sh's CA.
export KAFKA_TLS
export KAFKA_SECURITY_PROTOCOL := SASL_SSL
export KAFKA_SSL_CAFILE := $(KAFKA_DATA)/certs/ca.pem
endif

# The demo runs its own throw-away broker, so it never mixes with a stack left running by `make up`.
DEMO_DATA := $(CURDIR)/.data/kafka-demo
DEMO_KAFKA := KAFKA_PORT=9192 KAFKA_CONTROLLER_PORT=9193 KAFKA_DATA_DIR=$(DEMO_DATA)
DEMO_ADMIN := KAFKA_SASL_USERNAME=admin KAFKA_SASL_PASSWORD_FILE=$(DEMO_DATA)/credentials/admin \
  KAFKA_CREDENTIALS_DIR=$(DEMO_DATA)/credentials

.PHONY: help venv kafka-up kafka-down cluster-up cluster-down certs compose-secrets topics acl up down demo lint test bench chaos asyncapi clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

# First run: a line per step with its time, and pip's own progress (a few minutes, once).
$(STAMP): pyproject.toml
	@start=$$(date +%s); \
	if [ ! -x $(BIN)/python ]; then echo "venv: creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); fi; \
	echo "venv: installing Signoff and its dependencies (pyproject.toml; the first time takes a few minutes)"; \
	set +e; $(BIN)/pip install --disable-pip-version-check -e '.[dev]' 2>&1 \
	  | grep --line-buffered -E '^(Collecting|Installing|Successfully|ERROR)'; status=$${PIPESTATUS[0]}; set -e; \
	[ "$$status" = 0 ] || { echo "venv: pip install failed (run $(BIN)/pip install -e '.[dev]' to see why)"; exit 1; }; \
	echo "venv: ready in $$(( $$(date +%s) - start ))s"
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## create the virtualenv and install Signoff with its dependencies

kafka-up: ## start the local Kafka broker (127.0.0.1:9092, SASL/SCRAM + ACLs; data and passwords in .data/kafka)
	$(KAFKA) up

certs: ## make a CA and the broker certificate for SASL_SSL in .data/certs (KAFKA_TLS=1 makes its own)
	KAFKA_CERTS_DIR=$(CURDIR)/.data/certs $(KAFKA) certs

compose-secrets: ## the Kafka passwords and certificates compose.yaml mounts (.data/compose), and .env from .env.example with its required secrets generated
	bash deploy/kafka/compose-init.sh
	bash deploy/compose-env.sh

kafka-down: ## stop the local Kafka broker (topics and messages are kept)
	$(KAFKA) down

# The three-node cluster (deploy/kafka/cluster.sh): 127.0.0.1:9292-9294, data and passwords in
# .data/kafka-cluster; its topics get 3 replicas and min.insync.replicas 2, as the admin.
# KAFKA_TLS=1 and KAFKA_PLAINTEXT=1 apply to it as to the single broker.
CLUSTER_DATA := $(CURDIR)/.data/kafka-cluster
CLUSTER_ADMIN := KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9292,127.0.0.1:9293,127.0.0.1:9294 \
  KAFKA_SECURITY_PROTOCOL=$(or $(KAFKA_SECURITY_PROTOCOL),SASL_PLAINTEXT) \
  $(if $(filter 1,$(KAFKA_PLAINTEXT)),,KAFKA_SASL_USERNAME=admin KAFKA_SASL_PASSWORD_FILE=$(CLUSTER_DATA)/credentials/admin) \
  $(if $(filter 1,$(KAFKA_TLS)),KAFKA_SSL_CAFILE=$(CLUSTER_DATA)/certs/ca.pem)
cluster-up: venv ## start a three-node Kafka cluster (127.0.0.1:9292-9294, SASL/SCRAM + ACLs) and create the topics with 3 replicas, 2 in sync
	KAFKA_CLUSTER_DIR=$(CLUSTER_DATA) $(KAFKA) cluster-up
	$(CLUSTER_ADMIN) SIGNOFF_TOPIC_REPLICATION_FACTOR=3 SIGNOFF_TOPIC_MIN_INSYNC_REPLICAS=2 $(BIN)/signoff topics create

cluster-down: ## stop the three-node cluster (topics and messages are kept)
	KAFKA_CLUSTER_DIR=$(CLUSTER_DATA) $(KAFKA) cluster-down

topics: venv kafka-up ## create Signoff's topics (as the admin)
	$(AS_ADMIN) $(BIN)/signoff topics create

acl: venv kafka-up ## apply the ACLs of shared/acl.py (as the admin; prints what changed)
	@if [ "$(KAFKA_PLAINTEXT)" = 1 ]; then echo "KAFKA_PLAINTEXT=1: the broker authorizes nothing, no ACLs"; \
	else $(AS_ADMIN) $(BIN)/signoff acl apply; fi

# `make up REPLICAS=2`: two replicas of each service and of the console (signoff/devstack.py), their
# state shared in PostgreSQL: deploy/postgres.sh's (started here; Debian's package installed when
# missing), each service as its own role in its own schema (`deploy/postgres.sh url SERVICE`), or
# the server SIGNOFF_DATABASE_URL names when set. Plain `make up`: one each, SQLite.
REPLICAS ?= 1
up: venv kafka-up topics acl ## start Kafka and the four services (each as its own principal) in the background; REPLICAS=2: two of each, sharing PostgreSQL
	@if [ -f $(RUN)/stack.pid ] && kill -0 $$(cat $(RUN)/stack.pid) 2>/dev/null; then \
	  echo "stack already running (pid $$(cat $(RUN)/stack.pid))"; exit 0; fi; \
	mkdir -p $(RUN); \
	database=; if [ "$(REPLICAS)" != 1 ] && [ -z "$${SIGNOFF_DATABASE_URL:-}" ]; then \
	  bash deploy/postgres.sh up && database=--postgres || exit 1; fi; \
	nohup $(BIN)/python -m signoff.devstack $(RUN) --replicas $(REPLICAS) $$database > $(RUN)/stack.out 2>&1 & echo $$! > $(RUN)/stack.pid; \
	limit=$$((60 + 120 * ($(REPLICAS) - 1))); for _ in $$(seq 1 $$((limit * 10))); do \
	  grep -q "stack up" $(RUN)/stack.out && { cat $(RUN)/stack.out; exit 0; }; \
	  kill -0 $$(cat $(RUN)/stack.pid) 2>/dev/null || { cat $(RUN)/stack.out; exit 1; }; \
	  sleep 0.1; done; echo "stack did not start in $${limit}s"; exit 1

down: ## stop the services (every replica), then PostgreSQL if `make up REPLICAS=...` started it, then Kafka
	@if [ -f $(RUN)/stack.pid ]; then pid=$$(cat $(RUN)/stack.pid); kill $$pid 2>/dev/null || true; \
	  while kill -0 $$pid 2>/dev/null; do sleep 0.1; done; rm -f $(RUN)/stack.pid; echo "services stopped"; fi
	bash deploy/postgres.sh down
	$(KAFKA) down

# One shell, with a trap: whatever fails (the broker's start, a sample, Ctrl-C), the demo's broker is
# stopped on the way out; signoff.demo stops its services itself.
demo: venv ## run every path end to end on a fresh broker and print the timelines
	@trap '$(DEMO_KAFKA) $(KAFKA) down' EXIT; trap 'exit 130' INT; trap 'exit 143' TERM; \
	$(DEMO_KAFKA) $(KAFKA) reset; \
	$(DEMO_KAFKA) $(KAFKA) up; \
	KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9192 $(DEMO_ADMIN) $(BIN)/python -m signoff.demo .data/demo

lint: venv ## ruff (style, imports, pyflakes, bugbear) and mypy on shared/, services/, signoff/
	$(BIN)/ruff check shared services signoff tests bench
	$(BIN)/mypy

test: venv ## run the tests, then the component tests again on the real broker (throw-away brokers unless KAFKA_BOOTSTRAP_SERVERS is set)
	$(KAFKA) fetch
	bash deploy/chromium.sh  # Debian's chromium for the console's browser test (installed when missing)
	$(BIN)/pytest
	$(BIN)/pytest tests/component --broker=kafka

bench: venv ## benchmarks: the auto-approve path against a bare aiokafka relay; a burst (BURST=10000) against it; start-up and queries at 0 and 100,000 events; 1 vs 2 replicas on 3 brokers (SCALE_BURST=2000); artifact hashing; audit and verify on a big history; the digest of a 1 GiB S3 object
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.burst --burst $(or $(BURST),10000)
	$(BIN)/python -m bench.startup
	$(BIN)/python -m bench.snapshot_save
	$(BIN)/python -m bench.scale --burst $(or $(SCALE_BURST),2000)
	$(BIN)/python -m bench.hashing
	$(BIN)/python -m bench.record
	$(BIN)/python -m bench.s3
	$(BIN)/python -m bench.summary

chaos: venv ## faults (service and broker kills) against a seeded scenario, beside a fault-free baseline: the figures (CHAOS="--seed 7")
	$(KAFKA) fetch
	$(BIN)/python -m bench.chaos $(CHAOS)

asyncapi: venv ## regenerate the AsyncAPI document of each service under docs/asyncapi/
	@mkdir -p docs/asyncapi
	for svc in validator policy review_notifier deployer; do \
	  KAFKA_SECURITY_PROTOCOL=PLAINTEXT $(BIN)/faststream docs gen --factory services.$$svc.app:create_app --yaml --out docs/asyncapi/$$svc.yaml >/dev/null; \
	  echo "docs/asyncapi/$$svc.yaml"; done

clean: down ## stop everything and delete local data (Kafka logs, model store, state)
	rm -rf .data
