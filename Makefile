# Every habit of the project in one place. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# One .venv, installed as far as the target needs: the package alone for `make run`
# (with the redis extra for REDIS=1), the dev extra for the suite and the tools.
RUN_STAMP := $(VENV)/.installed-run
REDIS_STAMP := $(VENV)/.installed-redis
DEV_STAMP := $(VENV)/.installed-dev
LOG_DIR ?= logs
# The port of `make run`, `make server` and `make tui`: PORT=4000, or PROGRESS_PORT
# from the environment, else 3003. The TUI follows it.
PORT ?= $(or $(PROGRESS_PORT),3003)
URL = ws://127.0.0.1:$(PORT)/progress
# What `make run` starts in the foreground once its server listens (tests swap it).
TUI_COMMAND ?= $(BIN)/progress-tui
# How long `make run` waits for its server to listen, in tenths of a second.
START_TENTHS ?= 100
SERVER_ARGS ?=
# `make run REDIS=1`: two servers sharing one calculation through a private Redis.
REDIS ?=
PORT2 = $(shell echo $$(($(PORT) + 1)))
URL2 = ws://127.0.0.1:$(PORT2)/progress
BENCH_ARGS ?=
TUI_ARGS ?=
ARGS ?=
# Test processes at once (pytest-xdist): more than the cores, since most tests wait on
# timers and sockets. JOBS=0 runs the suite in this process alone.
JOBS ?= 4
# `make test-stress`: how many runs of the suite under load.
RUNS ?= 1
# `make test-oldest`: a venv of the lowest versions pyproject.toml allows.
OLDEST := .venv-oldest
OLDEST_STAMP := $(OLDEST)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help install run run-cluster server tui test-deps test test-stress test-oldest coverage lint style types bench screenshot capture clean

help: ## List the targets
	@awk -F ':.*## ' 'BEGIN { n = 0; width = 0 } \
	  /^[a-z-]+:.*## / { name[n] = $$1; text[n] = $$2; n++; if (length($$1) > width) width = length($$1) } \
	  END { for (i = 0; i < n; i++) printf "  make %-" width "s  %s\n", name[i], text[i] }' \
	  $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# What `make run` needs: the package and its own dependencies, none of the dev tools.
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

$(REDIS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[redis]'
	touch $(REDIS_STAMP) $(RUN_STAMP)

# The dev extra holds the redis one: a dev install serves every target.
$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP) $(REDIS_STAMP) $(RUN_STAMP)

install: $(DEV_STAMP) ## Create .venv and install the package with its dev extra

run: $(if $(REDIS),$(REDIS_STAMP),$(RUN_STAMP)) ## The main job: a server in the background and a TUI on it (PORT=4000 moves both; REDIS=1: two servers)
ifneq ($(REDIS),)
	@$(MAKE) --no-print-directory -o $(REDIS_STAMP) run-cluster
else
	@mkdir -p $(LOG_DIR)
	@echo "starting progress-server on port $(PORT) (log: $(LOG_DIR)/server.log); the TUI connects to it"
	@log=$(LOG_DIR)/server.log; touch $$log; seen=$$(wc -l <$$log); \
	  $(BIN)/progress-server --port $(PORT) $(SERVER_ARGS) >>$$log 2>&1 & server=$$!; \
	  trap 'kill $$server 2>/dev/null; wait $$server 2>/dev/null' EXIT INT TERM; \
	  tries=0; \
	  until tail -n +$$((seen + 1)) $$log | grep -q 'listening on '; do \
	    if ! kill -0 $$server 2>/dev/null; then \
	      echo "progress-server did not start:" >&2; \
	      tail -n +$$((seen + 1)) $$log | grep -v ' INFO ' | tail -n 5 >&2; \
	      exit 1; \
	    fi; \
	    if [ $$tries -ge $(START_TENTHS) ]; then \
	      echo "progress-server did not say 'listening on' in $$((tries / 10)) s" \
	        "(a --log-level above info hides it): see $$log" >&2; \
	      exit 1; \
	    fi; \
	    tries=$$((tries + 1)); sleep 0.1; \
	  done; \
	  $(TUI_COMMAND) --log-file $(LOG_DIR)/tui.log --url $(URL) $(TUI_ARGS)
endif

run-cluster: $(REDIS_STAMP) ## Two servers (PORT, PORT+1) sharing one calculation through a private Redis, and a TUI on both
	@command -v redis-server >/dev/null || { echo "make run REDIS=1 needs redis-server: apt-get install redis-server" >&2; exit 1; }
	@mkdir -p $(LOG_DIR)
	@redis_port=$$($(BIN)/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); \
	  redis-server --port $$redis_port --bind 127.0.0.1 --save "" --appendonly no >$(LOG_DIR)/redis.log 2>&1 & redis=$$!; \
	  $(BIN)/progress-server --port $(PORT) --redis-url redis://127.0.0.1:$$redis_port/0 $(SERVER_ARGS) >$(LOG_DIR)/server-1.log 2>&1 & one=$$!; \
	  $(BIN)/progress-server --port $(PORT2) --redis-url redis://127.0.0.1:$$redis_port/0 $(SERVER_ARGS) >$(LOG_DIR)/server-2.log 2>&1 & two=$$!; \
	  echo $$one >$(LOG_DIR)/server-1.pid; echo $$two >$(LOG_DIR)/server-2.pid; \
	  trap 'kill $$one $$two 2>/dev/null; wait $$one $$two 2>/dev/null; kill $$redis 2>/dev/null; rm -f $(LOG_DIR)/server-[12].pid' EXIT INT TERM; \
	  for pid in $$one $$two; do \
	    log=$(LOG_DIR)/server-$$([ $$pid = $$one ] && echo 1 || echo 2).log; tries=0; \
	    until grep -q 'listening on ' $$log 2>/dev/null; do \
	      if ! kill -0 $$pid 2>/dev/null; then echo "progress-server did not start:" >&2; grep -v ' INFO ' $$log | tail -n 5 >&2; exit 1; fi; \
	      if [ $$tries -ge $(START_TENTHS) ]; then echo "progress-server did not start in time: see $$log" >&2; exit 1; fi; \
	      tries=$$((tries + 1)); sleep 0.1; \
	    done; \
	  done; \
	  echo "two servers share one calculation: $(URL) (pid $$one) and $(URL2) (pid $$two), Redis on port $$redis_port"; \
	  echo "the TUI follows the first; from another terminal, kill \$$(cat $(LOG_DIR)/server-1.pid) and it moves to the second (logs in $(LOG_DIR)/)"; \
	  $(TUI_COMMAND) --log-file $(LOG_DIR)/tui.log --url $(URL) --url $(URL2) $(TUI_ARGS)

server: $(RUN_STAMP) ## Start only the server in the foreground (SERVER_ARGS="..." passes options)
	$(BIN)/progress-server --port $(PORT) $(SERVER_ARGS)

tui: $(RUN_STAMP) ## Start only a TUI, e.g. in another terminal (TUI_ARGS="..." passes options)
	@mkdir -p $(LOG_DIR)
	$(BIN)/progress-tui --log-file $(LOG_DIR)/tui.log $(if $(PROGRESS_URL)$(findstring --url,$(TUI_ARGS)),,--url $(URL)) $(TUI_ARGS)

# What the tests need from the system: tmux (the end-to-end TUI test) and redis-server
# (the Redis tests start private ones); installed with apt-get when missing (CI is root).
test-deps:
	@missing=""; command -v tmux >/dev/null || missing="tmux"; \
	  command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing$$missing (the end-to-end TUI test runs tmux; the Redis tests run their own redis-server)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } \
	    || { echo "could not install$$missing: install it (e.g. sudo apt-get install$$missing) and run make test again"; exit 1; }; \
	    if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then \
	      echo "note: the redis-server package started a system Redis; the tests use private ones on free ports"; fi; \
	  fi

test: $(DEV_STAMP) test-deps ## The whole suite, JOBS processes at once, in random order (ARGS="..." passes pytest options)
	$(BIN)/pytest -n $(JOBS) $(ARGS)

test-stress: $(DEV_STAMP) test-deps ## The suite RUNS times while a CPU hog keeps every core busy, as on a shared CI machine
	@hogs=""; for core in $$(seq $$(nproc)); do \
	    $(BIN)/python -c 'while True: pass' & hogs="$$hogs $$!"; done; \
	  trap 'kill $$hogs 2>/dev/null' EXIT INT TERM; \
	  for run in $$(seq $(RUNS)); do \
	    echo "run $$run of $(RUNS), with $$(nproc) CPU hogs beside it"; \
	    PROGRESS_TEST_TIME_FACTOR=$${PROGRESS_TEST_TIME_FACTOR:-2} $(BIN)/pytest -n $(JOBS) -q $(ARGS) || exit 1; \
	  done

$(OLDEST_STAMP): pyproject.toml $(DEV_STAMP)
	rm -rf $(OLDEST)
	$(BIN)/uv venv -q --python $(PYTHON) $(OLDEST)
	$(BIN)/uv pip install -q --python $(OLDEST)/bin/python --resolution lowest-direct -e '.[dev]'
	touch $(OLDEST_STAMP)

test-oldest: $(OLDEST_STAMP) test-deps ## The suite on the lowest version of every dependency pyproject.toml allows (but the look: snapshots)
	@$(OLDEST)/bin/python -c 'import importlib.metadata as m; print("oldest:", ", ".join(f"{n} {m.version(n)}" for n in ("websockets", "textual", "click", "redis", "psutil", "prometheus-client", "uvloop")))'
	$(OLDEST)/bin/pytest -n $(JOBS) -q --ignore=tests/tui/test_snapshots.py --ignore=tests/bench $(ARGS)

coverage: $(DEV_STAMP) test-deps ## The suite under coverage, the CLIs and servers it starts included; total and htmlcov/
	@$(BIN)/coverage erase
	@# Measuring slows the code down about twice: the tests' timings scale with it.
	PROGRESS_TEST_TIME_FACTOR=$${PROGRESS_TEST_TIME_FACTOR:-3} $(BIN)/coverage run -m pytest -n $(JOBS) -q $(ARGS); \
	  status=$$?; \
	  $(BIN)/coverage combine -q; \
	  $(BIN)/coverage report | tail -n 25; \
	  $(BIN)/coverage html -q && echo "report: htmlcov/index.html"; \
	  exit $$status

lint: $(DEV_STAMP) ## ruff check, ruff format --check, and the floors of docs/architecture.md
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -p no:randomly -p no:cacheprovider tests/test_layers.py

style: $(DEV_STAMP) ## Fix what ruff can fix, and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

types: $(DEV_STAMP) ## mypy over the packages
	$(BIN)/mypy

bench: $(DEV_STAMP) ## Benchmark against the peers (BENCH_ARGS="--quick" for about a minute)
	@mkdir -p bench-results
	$(BIN)/progress-bench --json bench-results/latest.json $(BENCH_ARGS)

screenshot: $(DEV_STAMP) ## Save docs/images/progress-tui.svg from a real run
	$(BIN)/python docs/screenshot.py

capture: $(STAMP) ## Save README's animation (three panes, one run) and the pictures of docs/clients.md
	$(BIN)/python docs/capture.py

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) $(OLDEST) .pytest_cache .mypy_cache .ruff_cache $(LOG_DIR) *.egg-info .coverage .coverage.* htmlcov
