# One command each (see README):
#   make repro   set up .venv and run the whole pipeline (dvc repro)
#   make test    set up .venv and run the linter and the test suite
#   make seeds   the book for 3 seeds as DVC experiments, judged against their spread
#   make exps    dvc exp show for a 120-column terminal (EXP=lenet_mnist: that one's columns)
#   make repro JOBS=4, make quick JOBS=2: up to that many stages at a time (Dask)
# Offline machines: DL4CV_MIRROR=/path/to/mirror make repro
# No Animals (the book's dataset, no public URL)? Their stages wait; docs/data.md

VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup repro quick seeds exps test lint clean-venv wheelhouse

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# JOBS=N (N > 1) runs up to N stages at a time on a local Dask cluster, SCHEDULER=ADDRESS on the
# workers of a running Dask scheduler (src/dl4cv/parallel/); JOBS=1, the default, is dvc repro.
JOBS      ?= 1
SCHEDULER ?=
PARALLEL  := --jobs $(JOBS)$(if $(SCHEDULER), --scheduler $(SCHEDULER))
repro: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(if $(or $(SCHEDULER),$(filter-out 1,$(JOBS))),\
		$(BIN)/python -m dl4cv.parallel $(PARALLEL),dvc repro)

# profile: quick, dvc repro, dvc exp save, then params.yaml put back as it was (src/dl4cv/quick.py)
quick: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m dl4cv.quick $(PARALLEL)

# The book profile for SEEDS seeds (42, 43, ...) as queued DVC experiments, JOBS at a time,
# then reports/seeds.{md,html,json}: every figure against its spread (src/dl4cv/seeds/)
SEEDS ?= 3
seeds: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m dl4cv.seeds --seeds $(SEEDS) --jobs $(JOBS)

# Each experiment's headline metrics (the `<id>.accuracy` and `<id>.precision_weighted` columns
# of reports/metrics/, kept for the ids matching the regex EXP) and the params that differ;
# no Created column, no dependency hashes (the columns with a '/').
EXP ?= .*
HEADLINE := \.(accuracy|precision_weighted)$$
exps:
	PATH="$(abspath $(BIN)):$$PATH" dvc exp show --no-pager --only-changed \
		--drop 'Created|.*/|.*$(HEADLINE)' --keep '($(EXP))$(HEADLINE)'

# The MLflow UI on the repository's store, opened on the dl4cv experiment's runs (not GenAI).
UI_PORT ?= 5000
ui: $(STAMP)
	@test -f mlflow.db || { echo "make ui: no mlflow.db here yet (make quick, or dvc repro, writes it)"; exit 1; }
	@$(BIN)/python -c "import mlflow; mlflow.set_tracking_uri('sqlite:///mlflow.db'); \
		e = mlflow.get_experiment_by_name('dl4cv'); \
		print('open http://127.0.0.1:$(UI_PORT)/#/experiments/%s?workflowType=machine_learning' \
		% (e.experiment_id if e else ''))" 2>/dev/null
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port $(UI_PORT)

lint: $(STAMP)
	$(BIN)/ruff check src stages tests bench scripts
	$(BIN)/ruff format --check src stages tests bench scripts

test: $(STAMP) lint
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q -n 2 --dist loadfile

# Wheels for an offline Linux x86-64 server (docs/gpu.md, "Offline GPU server"): WHEEL_HAVE is what
# `python3 -m pip list --format=freeze` prints there; TensorFlow is left out (JAX trains there).
WHEEL_PYTHON ?= 3.12
WHEEL_HAVE   ?=
WHEELHOUSE   ?= wheelhouse
wheelhouse: $(STAMP)
	$(BIN)/python scripts/wheelhouse.py --python $(WHEEL_PYTHON) --out $(WHEELHOUSE) \
		$(if $(WHEEL_HAVE),--have $(WHEEL_HAVE))

clean-venv:
	rm -rf $(VENV)
