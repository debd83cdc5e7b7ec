# Two entry points: `make run` (set up, then run the workflow on config/config.yaml) and
# `make test` (set up, then run the whole test suite). Both start from a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= all
# The CPU build of torch is installed first so that pip does not pull a multi-GB CUDA build;
# on a GPU machine, run `make setup TORCH=torch==2.13.0 TORCH_INDEX=` with your CUDA index.
TORCH ?= torch==2.13.0

.PHONY: setup run test lint bench report clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(VENV)/bin/snakemake --cores $(CORES)

test: setup
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks workflow/scripts
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules
	$(VENV)/bin/snakemake --lint --configfile .test/config/config.yaml

bench: setup
	$(PY) benchmarks/run_all.py

report: setup
	$(VENV)/bin/snakemake --report report.html

clean:
	rm -rf results .snakemake report.html
