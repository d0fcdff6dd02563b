# Two commands matter: `make demo` (the pipeline end to end) and `make test` (every test).
# Everything else is a step they take, runnable on its own.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
SPARK_INSTALLED := $(VENV)/.spark-installed

.PHONY: install up down status demo test test-unit test-integration test-faults bench lint schemas browser test-traces test-cluster

# One progress line; pip's own output goes to $(VENV)/install.log, named if the step fails.
$(INSTALLED): pyproject.toml
	@$(PYTHON) infra/steps.py "Python environment" --log $(VENV)/install.log -- sh -c \
		'$(PYTHON) -m venv $(VENV) && $(BIN)/pip install --upgrade pip && $(BIN)/pip install -e ".[dev]"'
	@touch $(INSTALLED)

install: $(INSTALLED) ## Python environment with the project and its dev tools

# The Spark extra (pyspark, with Spark's jars), only for the cluster suite's batch jobs on Spark.
$(SPARK_INSTALLED): $(INSTALLED)
	@$(PYTHON) infra/steps.py "pyspark (the cluster suite's Spark)" --log $(VENV)/install.log -- sh -c \
		'$(BIN)/pip install -e ".[dev,spark]"'
	@touch $(SPARK_INSTALLED)

up: $(INSTALLED) ## start Kafka and MinIO (built or fetched once, cached under ~/.cache/conveyor)
	$(BIN)/python -m infra up

down: $(INSTALLED) ## stop the services (if any), Kafka and MinIO by process id; data stays
	$(BIN)/conveyor down

status: $(INSTALLED)
	$(BIN)/python -m infra status

demo: $(INSTALLED) ## the main job end to end: data arrival to a served prediction
	$(BIN)/conveyor demo

browser: ## Debian's chromium and chromium-driver for the console's browser tests (installed when missing)
	bash infra/browser.sh

test: up browser ## every test, against the real servers (the fault suite is `make test-faults`)
	$(BIN)/pytest --ignore=tests/faults --ignore=tests/traces --ignore=tests/cluster

test-faults: up ## the fault and bad-input suite: killed services, stopped servers, poison messages
	$(BIN)/pytest tests/faults

test-traces: ## opt-in: Jaeger built from its Go module, and one arrival's trace read back from it
	CONVEYOR_JAEGER=1 $(MAKE) up
	CONVEYOR_JAEGER=1 $(BIN)/pytest tests/traces

test-cluster: up $(SPARK_INSTALLED) ## opt-in cluster suite: three Kafka brokers, two registry replicas, killed mid-burst; Spark
	$(BIN)/pytest tests/cluster

bench: up ## benchmarks with ratios against baselines measured in the same run (not part of make test)
	$(BIN)/python -m tests.bench

test-unit: $(INSTALLED)
	$(BIN)/pytest tests/unit

test-integration: up
	$(BIN)/pytest tests/integration

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared services infra

schemas: $(INSTALLED) ## regenerate the committed JSON Schemas of the events
	$(BIN)/python -m shared.events.schema_export
