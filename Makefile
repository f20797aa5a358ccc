# Deep Unlearn: every stage is a parameterised notebook rendered by papermill from
# notebooks/<stage>.py (jupytext) + params/<stage>/<CONFIG>.yaml into outputs/nb/<stage>/<CONFIG>.ipynb,
# always through the one command line, `deepunlearn run STAGE CONFIG [--set KEY=VALUE]`.
# Results are cached in outputs/store, so a rerun only computes what is missing.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CONFIG ?= demo
WORKERS ?= 1
STAMP  := $(VENV)/.setup-done
RUN    := $(PY) -m deepunlearn.cli run
# LAUNCH=<params/launch/NAME>: spread train, unlearn, attack (and paper's stages) over jobs (Slurm or local)
LAUNCH ?=
STAGE  := $(if $(LAUNCH),$(PY) -m deepunlearn.cli launch --with $(LAUNCH),$(RUN))
# every path of a run is anchored here, whichever checkout the virtual environment was installed from
export DEEPUNLEARN_ROOT := $(CURDIR)
# pytest-xdist processes for make test, one thread each
TEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help setup demo study test test-fast test-margins train unlearn attack sweep analyze paper figures bench gpu-check lint lab clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv and install the package with its pins (and Debian's Fashion-MNIST)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@# Debian's real Fashion-MNIST (the demo's data), a PostgreSQL server (the multi-worker sweep test) and
	@# Slurm with munge (the single-node cluster of the Slurm test: python -m deepunlearn.localslurm)
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	   { [ ! -d /usr/share/datasets/fashion-mnist ] || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	     ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; }; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		  dataset-fashion-mnist postgresql slurm-wlm munge \
		|| echo "note: could not install dataset-fashion-mnist / postgresql / slurm-wlm / munge"; fi
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
	@$(RUN) $(subst /, ,$*)

# the demo chain: each stage after the one it reads from (every stage's config is called demo)
outputs/nb/sweep/demo.ipynb: outputs/nb/train/demo.ipynb
outputs/nb/unlearn/demo.ipynb: outputs/nb/sweep/demo.ipynb
outputs/nb/attack/demo.ipynb: outputs/nb/unlearn/demo.ipynb
outputs/nb/analyze/demo.ipynb: outputs/nb/attack/demo.ipynb

# Two one-thread processes, where nothing they time enters a ratio: the sweep's trials (each study claimed
# whole) and the attack's U-LiRA shadows; on 2 cores they do 1.26x the work of one 2-thread process
# (bench/trial_cost.py). Train and unlearn, whose times make the RTE, run alone on every core.
PAIRED := outputs/nb/sweep/demo.ipynb outputs/nb/attack/demo.ipynb
$(PAIRED): outputs/nb/%/demo.ipynb: notebooks/%.py params/%/demo.yaml | setup
	@OMP_NUM_THREADS=1 $(RUN) $* demo --worker 1 & pid=$$!; OMP_NUM_THREADS=1 $(RUN) $* demo; a=$$?; \
	wait $$pid; b=$$?; exit $$((a || b))

study: setup outputs/nb/analyze/study.ipynb  ## 18 methods, 5 seeds, 2 replicate searches on Fashion-MNIST: the ranking and its measured stability (<= 90 min, 2 cores)
	@echo "report: outputs/reports/study/index.html"

# the study chain; its two replicate searches run side by side, one thread each: on this 2-core
# machine two 1-thread processes train 1.26x the images per second of one 2-thread process
# (bench/trial_cost.py). Everything timed for RTE (train, unlearn) runs alone, on every core.
STUDY_SWEEPS := outputs/nb/sweep/study.ipynb outputs/nb/sweep/study-r1.ipynb
$(STUDY_SWEEPS) &: notebooks/sweep.py params/sweep/study.yaml params/sweep/study-r1.yaml outputs/nb/train/study.ipynb | setup
	@OMP_NUM_THREADS=1 $(RUN) sweep study-r1 & pid=$$!; OMP_NUM_THREADS=1 $(RUN) sweep study; a=$$?; \
	wait $$pid; b=$$?; exit $$((a || b))
outputs/nb/unlearn/study.ipynb: outputs/nb/sweep/study.ipynb
outputs/nb/unlearn/study-r1.ipynb: outputs/nb/sweep/study-r1.ipynb outputs/nb/unlearn/study.ipynb
outputs/nb/attack/study.ipynb: outputs/nb/unlearn/study.ipynb outputs/nb/unlearn/study-r1.ipynb
outputs/nb/attack/study-r1.ipynb: outputs/nb/unlearn/study-r1.ipynb outputs/nb/attack/study.ipynb
outputs/nb/analyze/study.ipynb: outputs/nb/attack/study.ipynb outputs/nb/attack/study-r1.ipynb

figures: setup  ## re-render tables, figures and report from the saved results and curves only (never trains or reads data)
	@$(RUN) analyze $(CONFIG) --set from_results=true --as $(CONFIG)-figures

# The paper: one params file per stage (params/<stage>/paper.yaml), run once per (dataset, arch) pair
# with --set dataset=... arch=...; CIFAR-10 / ResNet-18's attack adds U-LiRA (params/attack/paper-ulira.yaml).
# `make paper -n DATASETS=... ARCHS=...` prints the renders it would do.
DATASETS ?= mnist fashion_mnist cifar10 cifar100 utkface
ARCHS    ?= resnet18 tinyvit
PAIRS    := $(foreach d,$(DATASETS),$(foreach a,$(ARCHS),$(d)-$(a)))
PAPER_NB := $(foreach p,$(PAIRS),$(foreach s,train sweep unlearn attack,outputs/nb/$(s)/paper-$(p).ipynb))
paper_config = $(if $(and $(filter attack,$(1)),$(filter cifar10-resnet18,$(2))),paper-ulira,paper)
pair_of = $(patsubst paper-%,%,$(notdir $(1)))
empty :=
space := $(empty) $(empty)
comma := ,
PAPER_ATTACKS := $(subst $(space),$(comma),$(foreach p,$(PAIRS),$(call paper_config,attack,$(p))@$(subst -,/,$(p))))

# spec G.2: CIFAR-10 / ResNet-18's U-LiRA methods get their own search on the U-LiRA shadows first
ULIRA_SWEEP := $(if $(filter cifar10-resnet18,$(PAIRS)),outputs/nb/sweep/paper-ulira-cifar10-resnet18.ipynb)

paper: setup $(PAPER_NB) $(ULIRA_SWEEP)  ## the exact protocol (GPU): make paper DATASETS="cifar10 mnist" ARCHS="resnet18 tinyvit" [LAUNCH=slurm]
	$(RUN) analyze paper --set 'attack=[$(PAPER_ATTACKS)]'

$(PAPER_NB): outputs/nb/%.ipynb: | setup
	$(STAGE) $(firstword $(subst /, ,$*)) $(call paper_config,$(firstword $(subst /, ,$*)),$(call pair_of,$*)) \
	  --set dataset=$(word 1,$(subst -, ,$(call pair_of,$*))) --set arch=$(word 2,$(subst -, ,$(call pair_of,$*))) \
	  --as $(notdir $*)
$(ULIRA_SWEEP): outputs/nb/train/paper-cifar10-resnet18.ipynb | setup
	$(STAGE) sweep paper-ulira --set dataset=cifar10 --set arch=resnet18 --as paper-ulira-cifar10-resnet18
outputs/nb/attack/paper-cifar10-resnet18.ipynb: $(ULIRA_SWEEP)
$(foreach p,$(PAIRS),$(eval outputs/nb/sweep/paper-$(p).ipynb: outputs/nb/train/paper-$(p).ipynb))
$(foreach p,$(PAIRS),$(eval outputs/nb/unlearn/paper-$(p).ipynb: outputs/nb/sweep/paper-$(p).ipynb))
$(foreach p,$(PAIRS),$(eval outputs/nb/attack/paper-$(p).ipynb: outputs/nb/unlearn/paper-$(p).ipynb))

train: setup  ## render notebooks/train.py with params/train/$(CONFIG).yaml
	@$(STAGE) train $(CONFIG)

unlearn: setup  ## render notebooks/unlearn.py with params/unlearn/$(CONFIG).yaml
	@$(STAGE) unlearn $(CONFIG)

attack: setup  ## render notebooks/attack.py with params/attack/$(CONFIG).yaml
	@$(STAGE) attack $(CONFIG)

sweep: setup  ## Optuna studies of params/sweep/$(CONFIG).yaml with WORKERS processes (share storage: README)
	@for i in $$(seq 1 $$(($(WORKERS) - 1))); do $(RUN) sweep $(CONFIG) --worker $$i & done; \
	$(RUN) sweep $(CONFIG); status=$$?; wait; exit $$status

analyze: setup  ## render notebooks/analyze.py with params/analyze/$(CONFIG).yaml
	@$(RUN) analyze $(CONFIG)

bench: setup  ## training throughput vs a torchvision DataLoader loop; small-map convs; held freed memory; RTE under load
	$(PY) bench/train_throughput.py
	$(PY) bench/small_map_convs.py
	$(PY) bench/held_memory.py
	$(PY) bench/rte_under_load.py

gpu-check: setup  ## the one GPU check (< 5 min): throughput, then train/sweep/unlearn (every method)/attack/analyze on CUDA
	timeout 300 $(PY) bench/gpu_check.py

lint: setup  ## ruff
	$(VENV)/bin/ruff check lib tests bench notebooks

LAB_ARGS ?=
lab: setup  ## JupyterLab with jupytext: notebooks/*.py open as notebooks (as root too, the usual case in containers)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --ServerApp.contents_manager_class=jupytext.TextFileContentsManager \
	  $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(LAB_ARGS)

clean:  ## delete outputs/ (the store, executed notebooks, reports)
	rm -rf outputs
