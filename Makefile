# Deep Unlearn: every stage is a parameterised notebook rendered by papermill from
# notebooks/<stage>.py (jupytext) + params/<stage>/<CONFIG>.yaml into outputs/nb/<stage>/<CONFIG>.ipynb.
# Results are cached in outputs/store, so a rerun only computes what is missing.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CONFIG ?= demo
WORKERS ?= 1
STAMP  := $(VENV)/.setup-done
# pytest-xdist processes for make test, one thread each
TEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help setup demo test test-fast test-margins train unlearn attack sweep analyze paper figures bench lint lab clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv and install the package with its pins (and Debian's Fashion-MNIST)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@# Debian's real Fashion-MNIST (the demo's data) and a PostgreSQL server (the multi-worker sweep test)
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	   { [ ! -d /usr/share/datasets/fashion-mnist ] || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist postgresql \
		|| echo "note: could not install dataset-fashion-mnist / postgresql"; fi
	touch $(STAMP)

test: setup  ## run the whole test suite (unit tests, servers, the papermill chain on tiny params); CI runs this
	$(PY) -m pytest -n $(TEST_WORKERS)

test-fast: setup  ## the suite without the tests marked slow (the edit loop)
	$(PY) -m pytest -n $(TEST_WORKERS) -m "not slow"

# Tests about learned behaviour must hold whatever the float rounding: rerun them with the trained
# fixtures on other seeds, then on the portable (non-SIMD) ATen kernels, which round differently, and
# print each check's worst margin (tests/margins.py).
MARGIN_SEEDS ?= 0 1 2 3 4
MARGIN_LOG := outputs/test-margins.jsonl
test-margins: setup  ## the learned-behaviour tests over 5 fixture seeds and under ATEN_CPU_CAPABILITY=default, with their margins
	@mkdir -p outputs && rm -f $(MARGIN_LOG); status=0; \
	for s in $(MARGIN_SEEDS); do echo "== DEEPUNLEARN_TEST_SEED=$$s"; \
	  DEEPUNLEARN_MARGIN_LOG=$(CURDIR)/$(MARGIN_LOG) DEEPUNLEARN_TEST_SEED=$$s \
	  $(PY) -m pytest -n $(TEST_WORKERS) -m learned || status=1; done; \
	echo "== ATEN_CPU_CAPABILITY=default"; DEEPUNLEARN_MARGIN_LOG=$(CURDIR)/$(MARGIN_LOG) ATEN_CPU_CAPABILITY=default \
	  $(PY) -m pytest -n $(TEST_WORKERS) -m learned || status=1; \
	$(PY) tests/margins.py $(MARGIN_LOG) && exit $$status

demo: setup outputs/nb/analyze/demo.ipynb  ## the whole benchmark on the CPU default (Fashion-MNIST): train → sweep → unlearn → attack → analyze
	@echo "report: outputs/reports/demo/index.html"

# One pattern rule renders outputs/nb/<stage>/<config>.ipynb from notebooks/<stage>.py and
# params/<stage>/<config>.yaml; an executed notebook newer than both is not rendered again.
.SECONDEXPANSION:
outputs/nb/%.ipynb: notebooks/$$(firstword $$(subst /, ,$$*)).py params/$$*.yaml | setup
	@$(PY) -m deepunlearn.render $(subst /, ,$*)

# the demo chain: each stage after the one it reads from
outputs/nb/sweep/demo-all.ipynb: outputs/nb/train/demo.ipynb
outputs/nb/unlearn/demo-best.ipynb: outputs/nb/sweep/demo-all.ipynb
outputs/nb/attack/demo-best.ipynb: outputs/nb/unlearn/demo-best.ipynb
outputs/nb/analyze/demo.ipynb: outputs/nb/attack/demo-best.ipynb

figures: setup  ## re-render tables, figures and report from the saved results table (never trains)
	@$(PY) -m deepunlearn.stages.analyze params/analyze/$(CONFIG).yaml --set from_results=true

paper: setup  ## the exact protocol (GPU): make paper DATASETS="cifar10 mnist" ARCHS="resnet18 tinyvit"
	@for d in $(or $(DATASETS),mnist fashion_mnist cifar10 cifar100 utkface); do \
	  for a in $(or $(ARCHS),resnet18 tinyvit); do \
	    for s in train sweep unlearn attack; do $(PY) -m deepunlearn.render $$s paper-$$d-$$a || exit 1; done; \
	  done; done
	@$(PY) -m deepunlearn.render analyze paper

train: setup  ## render notebooks/train.py with params/train/$(CONFIG).yaml
	@$(PY) -m deepunlearn.render train $(CONFIG)

unlearn: setup  ## render notebooks/unlearn.py with params/unlearn/$(CONFIG).yaml
	@$(PY) -m deepunlearn.render unlearn $(CONFIG)

attack: setup  ## render notebooks/attack.py with params/attack/$(CONFIG).yaml
	@$(PY) -m deepunlearn.render attack $(CONFIG)

sweep: setup  ## Optuna studies of params/sweep/$(CONFIG).yaml with WORKERS processes (share storage: README)
	@for i in $$(seq 1 $$(($(WORKERS) - 1))); do $(PY) -m deepunlearn.stages.sweep $(CONFIG) --worker $$i & done; \
	$(PY) -m deepunlearn.render sweep $(CONFIG); status=$$?; wait; exit $$status

analyze: setup  ## render notebooks/analyze.py with params/analyze/$(CONFIG).yaml
	@$(PY) -m deepunlearn.render analyze $(CONFIG)

bench: setup  ## training throughput vs a torchvision DataLoader loop; small-map convs; RTE under load
	$(PY) bench/train_throughput.py
	$(PY) bench/small_map_convs.py
	$(PY) bench/rte_under_load.py

lint: setup  ## ruff
	$(VENV)/bin/ruff check lib tests bench notebooks

lab: setup  ## JupyterLab with jupytext: notebooks/*.py open as notebooks
	$(VENV)/bin/jupyter lab --ServerApp.contents_manager_class=jupytext.TextFileContentsManager

clean:  ## delete outputs/ (the store, executed notebooks, reports)
	rm -rf outputs
