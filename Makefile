# Alongside on one machine. `make run` starts everything; `make test` tests it.
SHELL := /bin/bash
PYTHON_BIN ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PLATFORM := $(PY) infra/local/localctl.py
PYTEST_FLAGS ?=

.PHONY: help venv run up stop status demo test lint test-unit test-integration test-slow test-stress bench bench-matching bench-reporting rebuild-reporting dead-letters replay-dead-letters tools clean

help:
	@echo "make run      install, start RabbitMQ, the datastore and every service, show it working"
	@echo "make stop     stop what make run started"
	@echo "make status   what is running where"
	@echo "make test     install and run every test (unit, integration, faults)"
	@echo "make test-unit | test-integration | test-slow   one suite"
	@echo "make demo     on a running system (make run): the golden path over the API, then the quarter's report"
	@echo "make bench    event backbone benchmark; make bench-matching: suggestions and match plan;"
	@echo "              make bench-reporting: projection rebuild and report times"
	@echo "make rebuild-reporting [SITE=...]   rebuild reporting's projections from its archive"
	@echo "make dead-letters SERVICE=reporting | make replay-dead-letters SERVICE=reporting [EVENT_IDS=...]"

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON_BIN) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is needed, found " + sys.version' 
	@test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP)

run: up
	PYTHONWARNINGS=ignore $(PY) infra/local/smoke.py

up: venv
	$(PLATFORM) up

stop:
	@test -x $(PY) && $(PLATFORM) down || true

status: venv
	$(PLATFORM) status

demo: venv
	PYTHONWARNINGS=ignore $(PY) infra/local/demo.py

# promtool and prometheus (Debian's package) for the alert-rule and scrape tests.
tools:
	@sh infra/tools/install.sh || echo "promtool/prometheus not installed: their tests will skip"

test: venv lint tools
	$(PLATFORM) broker
	$(PY) -m pytest -m "not stress" $(PYTEST_FLAGS)

# The heavier capacity race; the normal one runs in make test.
test-stress: venv
	$(PLATFORM) broker
	$(PY) -m pytest -m stress $(PYTEST_FLAGS)

lint: venv
	$(VENV)/bin/ruff check .

test-unit: venv
	$(PY) -m pytest -m "not integration" $(PYTEST_FLAGS)

test-integration: venv
	$(PLATFORM) broker
	$(PY) -m pytest -m "integration and not slow" $(PYTEST_FLAGS)

test-slow: venv
	$(PLATFORM) broker
	$(PY) -m pytest -m slow $(PYTEST_FLAGS)

bench: venv
	$(PLATFORM) broker
	$(PY) tests/benchmarks/bench_events.py
	$(PY) tests/benchmarks/bench_events.py --rate 50 --events 500

bench-matching: venv
	$(PLATFORM) broker
	$(PY) tests/benchmarks/bench_matching.py

bench-reporting: venv
	$(PY) tests/benchmarks/bench_reporting.py

rebuild-reporting: venv
	$(PY) -m services.reporting.rebuild $(if $(SITE),--site $(SITE))

dead-letters: venv
	$(PY) -m shared.deadletters list $(SERVICE)

replay-dead-letters: venv
	$(PY) -m shared.deadletters replay $(SERVICE) $(EVENT_IDS)

clean: stop
	rm -rf .local
