# Every habit of the project in one place. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LOG_DIR := logs
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run server tui test lint style types clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the package with its dev extra

run: $(STAMP) ## The main job: start the server (ARGS="..." passes options)
	$(BIN)/progress-server $(ARGS)

server: $(STAMP) ## Start only the server (ARGS="..." passes options)
	$(BIN)/progress-server $(ARGS)

test: $(STAMP) ## Run the whole test suite
	@command -v tmux >/dev/null || { echo "installing tmux (needed by the end-to-end TUI test)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null; }
	$(BIN)/pytest $(ARGS)

lint: $(STAMP) ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

style: $(STAMP) ## Fix what ruff can fix, and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

types: $(STAMP) ## mypy over the packages
	$(BIN)/mypy

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(LOG_DIR) *.egg-info
