# harestart: the two commands that work on a fresh machine are `make demo` and `make test`.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
BIN   := $(VENV)/bin
PYTEST_ARGS ?=
# The lab flavour for `make demo` / `make bench`: mariadb (MariaDB 10.11) or mysql (Oracle MySQL 9.7).
FLAVOR ?= mariadb

.PHONY: help venv lab lab-image promtool lint unit integration test demo demo-switchover bench bench-report bench-api bench-writegap bench-scale golden docs docs-serve clean

help:
	@echo "make demo   bring up a lab cluster, restart it with harestart, tear it down (FLAVOR=mariadb|mysql)"
	@echo "make demo-switchover  the same lab behind HAProxy: a writer through the proxy, a switchover run with"
	@echo "                      the lab/hooks scripts, the write gaps printed (DEMO_STRATEGY=restart to compare)"
	@echo "make test   lint + unit + integration tests (real MariaDB/MySQL + MHA containers)"
	@echo "make lab    prepare the compose lab (Docker engine, both images, keys); then docker-compose up -d"
	@echo "make bench  every bench (restart timings on a lab cluster, FLAVOR=mariadb|mysql; api; writegap; scale; preflight),"
	@echo "            then one report: build/bench/report.json and report.md, each figure with its load average"
	@echo "make bench-report  that report again from the JSON files in build/bench/"
	@echo "make bench-scale  harestart's own cost per group on simulated fleets (no Docker; SCALE_ARGS=...)"
	@echo "make bench-api  harestart serve under load on a lab cluster: 50 clients healthy / replica paused, 500 idle connections, 1,000 slowloris (API_ARGS=...)"
	@echo "make docs   build the docs site (MkDocs + Material, reference generated from the code) into build/site"
	@echo "make docs-serve  serve the docs site on http://127.0.0.1:8000 (DOCS_PORT=...), rebuilt on every change"
	@echo "make golden  write tests/data/golden/ anew from tests/golden.py (after a plan change made on purpose)"
	@echo "make bench-writegap  write gaps of restart vs switchover through HAProxy, 256 MB vs 4 GB dirty pool,"
	@echo "                     per-event vs persistent hooks, quiet vs loaded (WRITEGAP_ARGS=...)"

# The virtualenv is rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,docs]'
	touch $@

venv: $(VENV)/.installed

# Docker engine (installed and started only when none answers), both lab images
# (harestart-lab:mariadb and harestart-lab:mysql), keys and passwords.
lab:
	bash lab/setup.sh all

lab-image:
	bash lab/setup.sh docker
	bash lab/setup.sh image

# promtool and prometheus (Debian's prometheus package, installed when missing, its service
# never started): the alerting rules in lint, the dashboard's queries in unit and integration.
promtool:
	bash monitoring/setup.sh

lint: venv promtool
	$(BIN)/ruff check harestart tests bench
	$(BIN)/ruff format --check harestart tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/ruff check docs/gen_ref.py && $(BIN)/ruff format --check docs/gen_ref.py
	promtool check rules monitoring/prometheus/harestart-rules.yml
	promtool test rules monitoring/prometheus/harestart-rules.test.yml
	$(MKDOCS) build --strict

unit: venv promtool
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: venv lab-image promtool
	$(BIN)/pytest tests/integration -m integration $(PYTEST_ARGS)

# The whole suite. Integration tests are never skipped: without Docker the run fails.
# Two pytest-xdist workers (most of an integration test is waiting on mysqld and MHA, so two
# clusters share the two cores well): a module at a time per worker, its shared cluster in one
# process, the longest modules first (tests/integration/conftest.py). PYTEST_WORKERS=0: one
# process, as before.
PYTEST_WORKERS ?= 2
test: venv lint lab-image promtool
	$(BIN)/pytest tests -n $(PYTEST_WORKERS) --dist loadfile --durations=25 $(PYTEST_ARGS)

demo: venv lab
	LAB_FLAVOR=$(FLAVOR) bash lab/demo.sh

# The lab behind HAProxy (docker-compose profile "proxy"), a writer through its writer frontend,
# `harestart run --source-strategy switchover` with lab/hooks/lab-haproxy.yml; prints the write
# gaps. DEMO_STRATEGY=restart runs the seed's procedure the same way. MariaDB lab only.
demo-switchover: venv lab
	bash lab/demo-switchover.sh

# Every bench, each writing its JSON into $(BENCH_DIR), then one report of all their figures
# (bench/report.py): $(BENCH_DIR)/report.json and report.md, each figure beside the load average
# it was measured under, its date and flavour, and the commit. A bench that fails does not stop
# the others or the report; make still fails at the end.
BENCH_DIR ?= build/bench
bench: venv lab-image
	@mkdir -p $(BENCH_DIR); failed=0; \
	$(PY) -m bench --flavor $(FLAVOR) --json $(BENCH_DIR)/restart-$(FLAVOR).json $(BENCH_ARGS) || failed=1; \
	$(PY) -m bench.api --flavor $(FLAVOR) --json $(BENCH_DIR)/api-$(FLAVOR).json $(API_ARGS) || failed=1; \
	$(PY) -m bench.writegap --json $(BENCH_DIR)/writegap.json $(WRITEGAP_ARGS) || failed=1; \
	$(PY) -m bench.scale --json $(BENCH_DIR)/scale.json $(SCALE_ARGS) || failed=1; \
	$(PY) -m bench.preflight --json $(BENCH_DIR)/preflight.json $(PREFLIGHT_ARGS) || failed=1; \
	$(PY) -m bench.report --out $(BENCH_DIR)/report || failed=1; \
	exit $$failed

# The one report again, from the JSON files already in $(BENCH_DIR) (e.g. after a single bench
# was run with --json $(BENCH_DIR)/NAME.json).
bench-report: venv
	$(PY) -m bench.report --out $(BENCH_DIR)/report

# `harestart serve` on one lab cluster: 50 clients x 30 s polling GET /ha/{id}, healthy then with a
# replica paused; 500 idle keep-alive connections and a new client's GET. e.g. API_ARGS="--duration 10"
bench-api: venv lab-image
	$(PY) -m bench.api --flavor $(FLAVOR) $(API_ARGS)

# Write gaps through the lab's HAProxy: restart vs switchover with a 256 MB and a 4 GB dirty
# source buffer pool (MariaDB lab), each switchover with per-event and persistent hooks, on the
# machine as it is and under a CPU burner (2x the cores).
# e.g. make bench-writegap WRITEGAP_ARGS="--pools 256M --strategies switchover --loads quiet"
bench-writegap: venv lab-image
	$(PY) -m bench.writegap $(WRITEGAP_ARGS)

# Simulated fleets of 100, 1,000 and 10,000 groups on the unit tests' fakes (no Docker):
# CPU per group, wall time and memory at --parallel-groups 1, 50, 500, and `harestart plan`.
# e.g. make bench-scale SCALE_ARGS="--groups 100,1000 --parallel 1,50"
bench-scale: venv
	$(PY) -m bench.scale $(SCALE_ARGS)

# The golden plans (tests/data/golden/) written anew from tests/golden.py's cases: after a plan
# change made on purpose, review the diff and commit it. Tests only compare, never write.
golden: venv
	$(PY) -m tests.golden

# The docs site (docs/, mkdocs.yml): the reference pages are generated from the code at build
# time (docs/gen_ref.py, mkdocs-click). Material and MkDocs print notices about their futures on
# every build; they are not warnings of this site.
MKDOCS := NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs
DOCS_PORT ?= 8000
docs: venv
	$(MKDOCS) build --strict

docs-serve: venv
	$(MKDOCS) serve --strict --dev-addr 127.0.0.1:$(DOCS_PORT)

clean:
	-docker ps -aq --filter label=harestart.lab | xargs -r docker rm -f
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tests/.artifacts
