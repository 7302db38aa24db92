# Everything a developer or CI needs; `make test` works on a fresh clone.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UV := $(VENV)/bin/uv
# pytest-xdist workers for `make test`: one per core, at most 4 (each starts its own Azurite and
# emulator); WORKERS=0 runs the suite in one process
WORKERS := auto
AZURITE := node_modules/.bin/azurite
CHROMIUM := chromium
# Flex Consumption lists Python 3.10-3.12, not 3.13 (infra/README.md, "Python version"): the
# deployed app runs on 3.12, so the unit tests run on it too.
VENV312 := .venv-3.12
STAMP312 := $(VENV312)/.installed

.PHONY: install chromium test unit unit-3.12 lint demo az bench bench-10k bench-shards infra-check serve clean

# Bytecode for the suite's Python processes (2 workers, every child process a test starts, the
# emulators, mypy): a CI image often sets PYTHONDONTWRITEBYTECODE, and then each process compiled
# every module it imported from source, about 2 s of CPU a process (a third of the SIGTERM and
# hard-kill tests' CPU). These targets write it, under .venv/pycache: not beside the sources.
# The benches too: else their cold-start figures time the compiler, not the import.
test unit unit-3.12 lint bench bench-10k bench-shards: export PYTHONDONTWRITEBYTECODE :=
test unit unit-3.12 lint bench bench-10k bench-shards: export PYTHONPYCACHEPREFIX := $(abspath $(VENV))/pycache

# the three downloads (PyPI, npm, apt) at once: each waits on the network more than on a core
# (inside `make test`'s parallel step, the slots of its jobserver)
install:
	@$(MAKE) --no-print-directory $(if $(findstring jobserver,$(MAKEFLAGS)),,-j 3) $(STAMP) $(AZURITE) chromium

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@# one line per step: a fresh machine spends under a minute here (README, "Tests")
	@test -x $(PY) || { echo "make install: creating $(VENV) (Python 3.13)"; \
		py=$$(tools/find-python) && $$py -m venv $(VENV); }
	@echo "make install: installing Python packages into $(VENV) (pinned by constraints.txt)"
	@# pip installs uv (pinned), uv the rest: its parallel downloads take seconds where pip takes
	@# minutes. Each tool's exit status decides; its log is shown only when it fails.
	@$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt uv > $(VENV)/pip.log 2>&1 \
		|| { cat $(VENV)/pip.log; exit 1; }
	@$(UV) pip install --quiet --python $(PY) -r requirements-dev.txt -c constraints.txt > $(VENV)/pip.log 2>&1 \
		|| { cat $(VENV)/pip.log; exit 1; }
	@$(UV) pip install --quiet --python $(PY) --no-deps -e . > $(VENV)/pip.log 2>&1 \
		|| { cat $(VENV)/pip.log; exit 1; }
	@$(PY) -m pip check > $(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	@touch $(STAMP)

$(AZURITE): package.json
	@command -v npm >/dev/null || { echo "error: npm (Node 20) is needed for Azurite" >&2; exit 1; }
	@echo "make install: installing Azurite into node_modules (npm)"
	@npm install --no-audit --no-fund --loglevel=error >/dev/null
	@touch $(AZURITE)

# headless Chromium renders the HTML report in its test; apt installs it when missing (as root)
chromium:
	@command -v $(CHROMIUM) >/dev/null 2>&1 || tools/install-chromium

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check rotation emulator devstack tests bench tools function_app.py
	$(VENV)/bin/mypy

# lint (mypy: one core) and infra-check (checkov: one core, or the network while it installs)
# side by side, each one's output shown whole when it ends; then pytest on every core
test: install
	@$(MAKE) --no-print-directory -j 2 --output-sync=target lint infra-check
	$(VENV)/bin/pytest -q -n $(WORKERS) --maxprocesses 4 --dist loadgroup

unit: install
	$(VENV)/bin/pytest -q tests/unit

$(STAMP312): requirements.txt requirements-dev.txt constraints.txt | $(STAMP)
	@test -x $(VENV312)/bin/python || { echo "make unit-3.12: creating $(VENV312) (Python 3.12)"; \
		py=$$(tools/find-python 3.12) && $$py -m venv $(VENV312); }
	@echo "make unit-3.12: installing Python packages into $(VENV312) (pinned by constraints.txt)"
	@# with .venv's uv, from the cache that install filled
	@$(UV) pip install --quiet --python $(VENV312)/bin/python -r requirements-dev.txt -c constraints.txt \
		> $(VENV312)/pip.log 2>&1 || { cat $(VENV312)/pip.log; exit 1; }
	@$(VENV312)/bin/python -m pip check > $(VENV312)/pip.log 2>&1 || { cat $(VENV312)/pip.log; exit 1; }
	@touch $(STAMP312)

# the unit tests on the Python the deployed app runs on, in two workers (pytest-xdist comes with
# requirements-dev.txt): no stack to start, so one per core pays off at once
unit-3.12: $(STAMP312)
	$(VENV312)/bin/python -m pytest -q -p no:cacheprovider -n 2 tests/unit

infra-check:
	@bash infra/check.sh

demo: install
	$(PY) -m tools.demo

# The az CLI, for make bench's measured comparison only (bench/azcli.py): its own virtualenv, never
# the project's (az pins its own azure-* packages). Bytecode is compiled at install as pip does
# (uv does not by default), which takes 3-4 minutes at load 5-10: too long for make bench to do
# by itself, so it uses az when installed and otherwise keeps the comparison ESTIMATED.
AZ_VENV := .venv-az
AZ_STAMP := $(AZ_VENV)/.installed
az: $(AZ_STAMP)

$(AZ_STAMP): bench/requirements-az.txt | $(STAMP)
	@test -x $(AZ_VENV)/bin/python || { echo "make az: creating $(AZ_VENV) (Python 3.13)"; \
		py=$$(tools/find-python) && $(UV) venv --quiet --python $$py $(AZ_VENV); }
	@echo "make az: installing the az CLI into $(AZ_VENV) (bench only; pinned by bench/requirements-az.txt)"
	@$(UV) pip install --quiet --compile-bytecode --python $(AZ_VENV)/bin/python -r bench/requirements-az.txt \
		> $(AZ_VENV)/pip.log 2>&1 || { cat $(AZ_VENV)/pip.log; exit 1; }
	@touch $(AZ_STAMP)

# Issue 27's figures, each against its physical floor (bench/floors.py), ending with one summary
# table; 6-14 minutes on 2 shared cores (load 12-20), about 15 more with az installed (make az:
# az one resource at a time, 125 commands). N=10,000 mixed kinds is apart:
# `make bench-10k`. A benchmark that fails is named and the others still run; make fails at the end.
BENCH_SUMMARY := $(VENV)/bench-summary.jsonl
BENCH_STEPS := bench/targets.py bench/redelivery.py bench/discovery.py $(wildcard bench/rss.py) bench/estate.py
bench: install
	@test -x $(AZ_VENV)/bin/az || echo "make bench: az not installed: run make az (the az comparison stays ESTIMATED)"
	@rm -f $(BENCH_SUMMARY); export BENCH_SUMMARY=$(BENCH_SUMMARY); failed=""; \
	for script in $(BENCH_STEPS); do \
		echo "== $$script"; $(PY) $$script || failed="$$failed $$script"; \
	done; \
	echo "== make bench-shards"; $(MAKE) --no-print-directory bench-shards || failed="$$failed bench-shards"; \
	$(PY) bench/summary.py $(BENCH_SUMMARY); \
	echo "Not run by make bench: N=10,000 mixed kinds over 50 subscriptions (make bench-10k, about 20 minutes)."; \
	if [ -n "$$failed" ]; then echo "failed:$$failed" >&2; exit 1; fi

# N=10,000 consumers of mixed kinds; stops by itself (the run's budget, then the timeout)
bench-10k: install
	ROTATION_TIME_BUDGET_SECONDS=1500 timeout 1800 $(PY) bench/mixed_kinds.py --sizes 10000 --subscriptions 50 --throttled

# one key's run sharded over 1 and 2 instance processes through the queue (docs/scaling.md)
bench-shards: install
	timeout 1800 $(PY) bench/shards.py --n 3000 --subscriptions 30 --instances 1 2 --unsharded

# make serve INSTANCES=K: K instances, each on the queue and serving HTTP (the Functions host scaled out)
INSTANCES ?= 1
serve: install
	$(PY) -m devstack serve --scenario emulator/scenarios/sample.json --env-file .env.emulator --instances $(INSTANCES) $(SERVE_ARGS)

clean:
	rm -rf $(VENV) $(VENV312) .venv-checkov $(AZ_VENV) node_modules .pytest_cache .ruff_cache
