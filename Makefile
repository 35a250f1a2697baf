# `make run` and `make test` do all the set-up on a fresh machine: a virtualenv in .venv,
# streamvision installed into it (editable), then the job.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/streamvision run

lint: $(STAMP)
	$(BIN)/ruff check streamvision tests tools
	$(BIN)/mypy

test: lint
	$(BIN)/pytest
