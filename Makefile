# Each target sets itself up: a fresh clone needs only `make run` or `make test`.
VENV      ?= .venv
PYTHON    ?= python3
BIN       := $(VENV)/bin
DATA_ROOT ?= $(KDRUN_DATA_ROOT)
ARGS      ?=

.PHONY: install run smoke test test-slow bench lint format docs docs-serve clean

$(BIN)/kdrun: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[dev,slurm,tensorboard,mlflow,docs,peers,export,search]'
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

# Speed and memory ratios against baselines measured in the same run, interleaved and judged by
# their 95% interval (docs/benchmarks.md); torchdistill (the `peers` extra) is measured too.
# < 10 min on 2 cores. The data and memory figures need a CIFAR-10 copy:
# make bench DATA_ROOT=/path/to/cifar10
bench: install
	KDRUN_DATA_ROOT=$(DATA_ROOT) $(BIN)/python -m benchmarks.run_all

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The docs site from docs/ (mkdocs.yml): strict, so a broken link or a missing page fails.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The same site on http://127.0.0.1:8000, rebuilt on every edit.
docs-serve: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict

clean:
	rm -rf $(VENV) outputs site .pytest_cache .ruff_cache *.egg-info
