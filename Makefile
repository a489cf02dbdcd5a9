# Each target sets itself up: a fresh clone needs only `make run` or `make test`.
VENV      ?= .venv
PYTHON    ?= python3
BIN       := $(VENV)/bin
DATA_ROOT ?= $(KDRUN_DATA_ROOT)
ARGS      ?=

.PHONY: install run smoke test test-slow bench lint format clean

$(BIN)/kdrun: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[dev,slurm,tensorboard,mlflow,search]'
	touch $@

install: $(BIN)/kdrun

# The default experiment on CIFAR-10: downloads it into data/cifar10 where there is a network,
# or reads an existing copy: `make run DATA_ROOT=/path/to/cifar10` (or KDRUN_DATA_ROOT).
run: install
	$(BIN)/kdrun $(if $(DATA_ROOT),data.root=$(DATA_ROOT) data.download=false) $(ARGS)

smoke: install
	$(BIN)/kdrun experiment=smoke $(ARGS)

# Fast tier: synthetic data only, a few minutes on 2 cores.
test: install
	$(BIN)/pytest -q --durations=30

# Real-data and sweep tests: set KDRUN_TEST_CIFAR10 to an unpacked CIFAR-10 class-folder tree.
test-slow: install
	$(BIN)/pytest -q -m slow -rs --durations=15

# Speed and memory ratios against baselines measured in the same run (< 10 min on 2 cores).
# The data and memory figures need a CIFAR-10 copy: make bench DATA_ROOT=/path/to/cifar10
bench: install
	KDRUN_DATA_ROOT=$(DATA_ROOT) $(BIN)/python -m benchmarks.run_all

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache *.egg-info
