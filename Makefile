# minirims: `make lab` opens the course, `make test` runs every check CI runs. Both set everything up first.
#
#   PYTHON      the interpreter that creates the virtual environment (3.10 or newer)
#   VENV        where the virtual environment lives
#   TORCH_SPEC  what pip is asked for torch, installed before everything else. The default pin matches the
#               CPU wheel that CI provides on disk; on a GPU machine use e.g. `make lab TORCH_SPEC=torch`.
#               Changing it re-runs the install.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0

BIN := $(VENV)/bin
PY := $(BIN)/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed

# Code that `ruff format --check` covers (only the folders that exist).
FORMAT_DIRS := $(wildcard minirims tests tools benchmarks)
# What pytest collects: unit tests, then every notebook (nbval) in the course and its solutions.
PYTEST_PATHS ?= tests solutions notebooks
PYTEST_ARGS ?=
# The browser test (tests/browser/) drives Debian's Chromium through the system chromedriver. `make test`
# installs both with apt-get when they are missing and it runs as root with apt-get at hand (as CI does), and
# then requires the test to run (MINIRIMS_REQUIRE_BROWSER=1); elsewhere it says how, and the test is skipped.
# BROWSER_INSTALL=no never installs.
BROWSER_INSTALL ?= $(if $(filter 0,$(shell id -u)),$(if $(shell command -v apt-get),yes,no),no)
# Environment of the test run: the smallest experiment sizes, one BLAS thread per worker, no display.
TEST_ENV := MINIRIMS_PROFILE=smoke OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MPLBACKEND=Agg PYTHONHASHSEED=0 \
	$(if $(filter yes,$(BROWSER_INSTALL)),MINIRIMS_REQUIRE_BROWSER=1)

.DEFAULT_GOAL := help
.PHONY: help venv browser lab work-copy refresh test unit lint format exercises run-solutions data reproduce bench gpu-check gpu-data clean distclean FORCE

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# --- environment -------------------------------------------------------------------------------------------

# Records TORCH_SPEC; its time stamp changes only when the value does, which re-runs the install.
$(VENV)/.torch-spec: FORCE
	@mkdir -p $(VENV)
	@echo '$(TORCH_SPEC)' | cmp -s - $@ || echo '$(TORCH_SPEC)' > $@

$(STAMP): pyproject.toml $(VENV)/.torch-spec
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --progress-bar off '$(TORCH_SPEC)'
	$(PIP) install --progress-bar off -e '.[dev]'
	$(PIP) install --progress-bar off --no-deps 'minatar==1.0.15'
	@$(PY) -c "import torch, minirims; print('torch', torch.__version__, '| cuda available:', torch.cuda.is_available())"
	@touch $@

venv: $(STAMP)  ## create the virtual environment and install minirims with its dev tools

data: $(STAMP)  ## download and check the datasets (cache: MINIRIMS_DATA, default ~/.cache/minirims)
	$(PY) -m minirims data fetch

browser:  ## Chromium and chromedriver for the browser test (installed with apt-get when root)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "browser test: $$(chromium --version 2>/dev/null | head -n 1); $$(chromedriver --version | head -n 1)"; \
	elif [ "$(BROWSER_INSTALL)" = yes ]; then \
		echo "browser test: installing chromium and chromium-driver with apt-get"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq \
			&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
			&& chromedriver --version; \
	else \
		echo "browser test: no chromium/chromedriver, the test will be skipped" \
			"(to run it: sudo apt-get install chromium chromium-driver)"; \
	fi

# --- the course --------------------------------------------------------------------------------------------

# A learner works in WORK (git-ignored): a copy of notebooks/ made on the first `make lab`, never overwritten,
# so JupyterLab's autosave never touches the tracked course. `make refresh NB=06_copying` replaces one notebook
# with a fresh copy (the learner's version is kept as <name>.ipynb.bak).
WORK ?= work
# Jupyter refuses to start as root (e.g. in a container) unless told: added whatever LAB_ARGS says.
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
# More JupyterLab options, e.g. LAB_ARGS="--port=9999 --no-browser".
LAB_ARGS ?=

lab: data work-copy  ## set everything up and open the course (your copy in work/) in JupyterLab
	$(BIN)/jupyter lab $(LAB_ROOT) $(LAB_ARGS) $(WORK)/

work-copy:  ## copy into WORK the course notebooks it does not have yet (never overwrites)
	@mkdir -p $(WORK)
	@for nb in notebooks/*.ipynb; do \
		test -e "$(WORK)/$$(basename $$nb)" || { cp "$$nb" "$(WORK)/" && echo "copied $$nb to $(WORK)/"; }; \
	done

refresh:  ## NB=<name>: a fresh copy of notebooks/<name>.ipynb in WORK (yours kept as .bak)
	@test -n "$(NB)" || { echo "make refresh: say which notebook, e.g. make refresh NB=06_copying"; exit 2; }
	@test -f "notebooks/$(NB).ipynb" || { echo "make refresh: no notebooks/$(NB).ipynb"; exit 2; }
	@mkdir -p $(WORK)
	@if test -e "$(WORK)/$(NB).ipynb"; then mv "$(WORK)/$(NB).ipynb" "$(WORK)/$(NB).ipynb.bak"; fi
	cp "notebooks/$(NB).ipynb" "$(WORK)/$(NB).ipynb"

exercises: $(STAMP)  ## regenerate notebooks/ from solutions/
	$(PY) tools/make_exercises.py

run-solutions: $(STAMP)  ## re-execute solutions/ in place (smoke profile, as CI runs them), then regenerate notebooks/
	MINIRIMS_PROFILE=smoke $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=900 solutions/[0-9][0-9]_*.ipynb
	$(PY) tools/make_exercises.py

# --- checks ------------------------------------------------------------------------------------------------

lint: $(STAMP)  ## ruff lint (code and notebooks) and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check $(FORMAT_DIRS)

format: $(STAMP)  ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format $(FORMAT_DIRS)

test: data lint browser  ## set everything up and run all tests and notebooks (smoke profile), as CI does
	$(PY) tools/make_exercises.py --check
	@start=$$(date +%s); rc=0; \
	echo "$(TEST_ENV) $(PY) -m pytest -n 2 --dist loadfile --nbval-lax --nbval-current-env --durations=15 $(PYTEST_ARGS) $(PYTEST_PATHS)"; \
	$(TEST_ENV) $(PY) -m pytest -n 2 --dist loadfile --nbval-lax --nbval-current-env --durations=15 \
		$(PYTEST_ARGS) $(PYTEST_PATHS) || rc=$$?; \
	echo "pytest wall time: $$(( $$(date +%s) - start )) s"; \
	exit $$rc

unit: data  ## the unit tests only: tests/ without the slow ones (notebook runs, grading, browser)
	$(TEST_ENV) $(PY) -m pytest -n 2 --dist loadfile -m "not slow" --durations=10 $(PYTEST_ARGS) tests

# --- experiments -------------------------------------------------------------------------------------------

reproduce: data  ## the full-size experiments (needs a GPU; hours)
	$(PY) -m minirims mnist-resolution --profile full --seeds 3 --results results
	$(PY) -m minirims bouncing-balls --profile full --seeds 3 --results results

bench: $(STAMP)  ## speed and memory of the RIM cell against the alternatives (CPU, both sizes)
	$(PY) -m benchmarks.bench_cell

# The GPU check runs offline on a machine that cannot install or download: no venv stamp (no pip), the
# python that holds torch there (GPU_PYTHON: this venv's where it exists, else python3), MNIST from GPU_DATA
# (prepared here by `make gpu-data`). Without CUDA it stops at once with one line. See benchmarks/README.md.
OUT ?= results/gpu
GPU_DATA ?= .gpu/data
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:  ## every GPU measurement in one go, offline (~5-7 min on one H100/H200, expected), records to OUT
	$(GPU_PYTHON) -m benchmarks.gpu_check --device cuda --data $(GPU_DATA) --out $(OUT)

gpu-data: data  ## MNIST (its verified 17 MB source) into GPU_DATA, to carry to a GPU machine (no network)
	$(PY) -m benchmarks.gpu_data --out $(GPU_DATA)

# --- housekeeping ------------------------------------------------------------------------------------------

clean:  ## remove caches and build files (keeps the virtual environment, runs/ and the data)
	rm -rf build dist .pytest_cache .ruff_cache *.egg-info
	find . -name '$(notdir $(VENV))' -prune -o -type d \( -name __pycache__ -o -name .ipynb_checkpoints \) -print \
		| xargs rm -rf

distclean: clean  ## also remove the virtual environment
	rm -rf $(VENV)
