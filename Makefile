# harestart: the two commands that work on a fresh machine are `make demo` and `make test`.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
BIN   := $(VENV)/bin
PYTEST_ARGS ?=
# The lab flavour for `make demo` / `make bench`: mariadb (MariaDB 10.11) or mysql (Oracle MySQL 9.7).
FLAVOR ?= mariadb

.PHONY: help venv lab lab-image lint unit integration test demo bench clean

help:
	@echo "make demo   bring up a lab cluster, restart it with harestart, tear it down (FLAVOR=mariadb|mysql)"
	@echo "make test   lint + unit + integration tests (real MariaDB/MySQL + MHA containers)"
	@echo "make lab    prepare the compose lab (Docker engine, both images, keys); then docker-compose up -d"
	@echo "make bench  measure restart timings on a lab cluster (FLAVOR=mariadb|mysql)"

# The virtualenv is rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Docker engine (installed and started only when none answers), both lab images
# (harestart-lab:mariadb and harestart-lab:mysql), keys and passwords.
lab:
	bash lab/setup.sh all

lab-image:
	bash lab/setup.sh docker
	bash lab/setup.sh image

lint: venv
	$(BIN)/ruff check harestart tests bench
	$(BIN)/ruff format --check harestart tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: venv
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: venv lab-image
	$(BIN)/pytest tests/integration -m integration $(PYTEST_ARGS)

# The whole suite. Integration tests are never skipped: without Docker the run fails.
test: venv lint lab-image
	$(BIN)/pytest tests $(PYTEST_ARGS)

demo: venv lab
	LAB_FLAVOR=$(FLAVOR) bash lab/demo.sh

bench: venv lab-image
	$(PY) -m bench --flavor $(FLAVOR) $(BENCH_ARGS)

clean:
	-docker ps -aq --filter label=harestart.lab | xargs -r docker rm -f
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tests/.artifacts
