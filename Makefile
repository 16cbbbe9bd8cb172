# ae-lab: `make demo` (set-up + the whole assignment on synthetic data, offline W&B), `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The demo's W&B runs and reports land here (offline unless you are logged in to W&B).
export WANDB_DIR ?= $(CURDIR)
PROJECT ?= tarea05

.PHONY: setup demo grid analyze test test-fast notebook bench lint clean

setup: $(VENV)/.installed

# torch first and pinned: 2.13.0 (CPU) lies on the dev/CI machines' disk; any other version downloads gigabytes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,notebook,report,cluster]"
	touch $@

demo: setup grid analyze
	@echo "[ae-lab] demo done: runs under $(WANDB_DIR)/wandb, report under reports/$(PROJECT)/index.html"

grid: setup
	$(PY) -m ae_lab.sweep sweeps/demo.yaml --jobs 2

analyze: setup
	$(PY) analyze.py --project $(PROJECT) --offline-dir $(WANDB_DIR)/wandb

# Two pytest workers of one torch thread each: the tests are small and mostly Python-bound, so two
# processes use 2 cores better than one process with two threads. worksteal: a worker that runs out
# of tests takes half of the other's queue, so both end together (bench/README.md, History).
test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist worksteal

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# The hand-in: notebooks/tarea05.py (jupytext) executed by papermill into $(NOTEBOOK_OUT) and exported
# to Markdown next to it (images in <name>_files/, emptied first), reading the W&B groups real-grid,
# real-seeds and demo-grid (README: The hand-in notebook). NOTEBOOK_ARGS: papermill's `-p NAME VALUE`
# or `-f notebooks/smallest.yaml` (the CI size). Hide-input cells show only their output in the export.
NOTEBOOK_OUT ?= notebooks/tarea05.ipynb
MARKDOWN_PRIORITY := ['text/markdown','image/png','image/jpeg','text/plain']
notebook: setup
	$(VENV)/bin/jupytext --to ipynb --output $(NOTEBOOK_OUT) notebooks/tarea05.py
	$(VENV)/bin/papermill $(NOTEBOOK_OUT) $(NOTEBOOK_OUT) --cwd notebooks -k python3 --no-progress-bar \
	  $(NOTEBOOK_ARGS)
	rm -rf $(basename $(NOTEBOOK_OUT))_files
	$(VENV)/bin/jupyter nbconvert --to markdown $(NOTEBOOK_OUT) \
	  --NbConvertBase.display_data_priority="$(MARKDOWN_PRIORITY)" \
	  --TagRemovePreprocessor.remove_input_tags=hide-input

bench: setup
	$(PY) bench/run.py

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf outputs multirun reports .pytest_cache
