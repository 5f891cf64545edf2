# Every habit of the project in one place. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LOG_DIR := logs
SERVER_ARGS ?=
BENCH_ARGS ?=
TUI_ARGS ?=
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run server tui test lint style types bench screenshot clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the package with its dev extra

run: $(STAMP) ## The main job: a server in the background (log in logs/server.log) and a TUI
	@mkdir -p $(LOG_DIR)
	@echo "starting progress-server (log: $(LOG_DIR)/server.log); the TUI connects to it"
	@$(BIN)/progress-server $(SERVER_ARGS) >>$(LOG_DIR)/server.log 2>&1 & server=$$!; \
	  trap 'kill $$server 2>/dev/null; wait $$server 2>/dev/null' EXIT INT TERM; \
	  $(BIN)/progress-tui --log-file $(LOG_DIR)/tui.log $(TUI_ARGS)

server: $(STAMP) ## Start only the server in the foreground (SERVER_ARGS="..." passes options)
	$(BIN)/progress-server $(SERVER_ARGS)

tui: $(STAMP) ## Start only a TUI, e.g. in another terminal (TUI_ARGS="..." passes options)
	@mkdir -p $(LOG_DIR)
	$(BIN)/progress-tui --log-file $(LOG_DIR)/tui.log $(TUI_ARGS)

test: $(STAMP) ## Run the whole test suite (ARGS="..." passes pytest options)
	@command -v tmux >/dev/null || { echo "installing tmux (needed by the end-to-end TUI test)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null; } \
	  || { echo "could not install tmux: install it (e.g. sudo apt-get install tmux) and run make test again"; exit 1; }; }
	$(BIN)/pytest $(ARGS)

lint: $(STAMP) ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

style: $(STAMP) ## Fix what ruff can fix, and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

types: $(STAMP) ## mypy over the packages
	$(BIN)/mypy

bench: $(STAMP) ## Benchmark against the peers (BENCH_ARGS="--quick" for about a minute)
	@mkdir -p bench-results
	$(BIN)/progress-bench --json bench-results/latest.json $(BENCH_ARGS)

screenshot: $(STAMP) ## Save docs/images/progress-tui.svg from a real run
	$(BIN)/python docs/screenshot.py

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(LOG_DIR) *.egg-info
