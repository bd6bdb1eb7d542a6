# The README's two commands are `make demo` and `make test`; everything else is a helper.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
IDX_DIR := /usr/share/datasets/fashion-mnist
# Stage commands in dvc.yaml call `python`: make it the virtual environment's.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export NO_ALBUMENTATIONS_UPDATE := 1

# A local DVC remote beside the repository (outside it), for `dvc push` / `dvc pull`; override with DVC_REMOTE=...
DVC_REMOTE ?= $(abspath $(CURDIR)/..)/$(notdir $(CURDIR))-dvc-remote

.PHONY: demo test test-fast install fashion-mnist data remote repro lint format mlflow-ui clean-outputs

demo: install data remote repro  ## install, make the Fashion-MNIST demo data, run the whole pipeline, dvc push
	dvc push -q

# Two pytest-xdist workers, whole files each (module fixtures such as the e2e repo are built once): most of a
# test's time is a stage subprocess starting up (imports, MLflow), which two workers overlap on 2 cores.
test: install  ## the whole test suite, the end-to-end `dvc repro` on the fixture included
	$(PY) -m pytest -q -n 2 --dist loadfile

test-fast: install  ## the tests not marked slow or e2e: under a minute on 2 CPU cores
	$(PY) -m pytest -q -m "not slow and not e2e"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

fashion-mnist:  ## Debian's dataset-fashion-mnist package, when the IDX files are missing
	@if [ ! -f $(IDX_DIR)/train-images-idx3-ubyte.gz ]; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist; \
	fi

data: install fashion-mnist  ## data/{labeled,unlabeled,test} + analysis.csv, tracked with dvc add
	@if [ ! -d data/labeled ]; then $(PY) -m pipeline demo-data --out data --idx-dir $(IDX_DIR); fi
	dvc add -q data/labeled data/unlabeled data/test data/analysis.csv

remote: install  ## the local remote in .dvc/config.local (not committed), unless one is set already
	@if ! dvc remote default >/dev/null 2>&1; then \
	  mkdir -p "$(DVC_REMOTE)" && dvc remote add --local -d demo "$(DVC_REMOTE)" && \
	  echo "DVC remote 'demo': $(DVC_REMOTE)"; fi

repro: install  ## check params.yaml, dvc repro, then the rounds table (also when DVC found nothing to rerun)
	$(PY) -m pipeline check
	dvc repro
	$(PY) -m pipeline summary

lint: install
	$(VENV)/bin/ruff check pipeline stages tests bench
	$(VENV)/bin/ruff format --check pipeline stages tests bench

format: install
	$(VENV)/bin/ruff format pipeline stages tests
	$(VENV)/bin/ruff check --fix pipeline stages tests

mlflow-ui: install  ## http://127.0.0.1:5000
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000
