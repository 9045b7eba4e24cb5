# Front door: `make demo` runs the whole system against the simulator; `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.deps-stamp

.PHONY: setup browser demo test test-all bench chaos soak lint clean

# venv + dependencies + redis-server (installed with apt-get when missing). In CI (CI=true) the
# package is installed non-editable, so a file missing from the package (a .lua script) fails
# there, not in production; on a developer's machine it stays editable. pip's output goes to
# .venv/install.log, shown when the install fails (setuptools notes every editable install).
setup: $(STAMP)
	bash deploy/ensure-redis.sh
ifdef CI
	$(BIN)/pip install -q --no-deps --force-reinstall . >$(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
else
	$(BIN)/pip install -q --no-deps -e . >$(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
endif
	@$(BIN)/python -c "import backbeat.workers.scripts as s; [s.source(n) for n in s.NAMES]"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing dependencies into $(VENV) (pip's output: $(VENV)/deps.log)"
	$(BIN)/pip install -q --upgrade "pip>=25.1" >$(VENV)/deps.log 2>&1 || { cat $(VENV)/deps.log; exit 1; }
	$(BIN)/pip install -q . --group test --group bench --group lint >>$(VENV)/deps.log 2>&1 \
		|| { cat $(VENV)/deps.log; exit 1; }
	touch $(STAMP)

demo: setup
	$(BIN)/backbeat demo

# the browser the status page's test drives (Debian's chromium + chromedriver)
browser:
	bash deploy/ensure-browser.sh

# the short form (under 15 min on 2 cores): everything but the tests marked slow
test: setup browser
	$(BIN)/python -m pytest -m "not slow" -q --durations=15

# everything, the slow tests too (a longer chaos run, the chaos run with the knobs turned)
test-all: setup browser
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python tests/bench/run.py

# long chaos run: 2,000 jobs, 12 worker kills, 2 Redis SIGKILL restarts, provider faults
chaos: setup
	$(BIN)/python tests/bench/run.py --only reliability

# soak (10 min of load by default, BENCH_SOAK_S to change it): a mixed workload, random
# provider faults, a node SIGKILL a minute, a Redis restart; invariants checked at the end
soak: setup
	$(BIN)/python tests/bench/run.py --only soak

lint: setup
	$(BIN)/ruff check config provider workers tasks api simulator devstack tests

clean:
	rm -rf $(VENV) build .run *.egg-info .pytest_cache
