# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Analyze: ranks, tables, figures and the report
# The attack stage's rows of every listed config are gathered into one tidy results table (CSV and
# parquet), then ranked by the spec H protocol: a method **fails** on a (dataset, arch) if its
# seed-mean RTE is at most 1, or its RetDev is no better than the Original's, or its
# indiscernibility (Test MIA) is no better than the Original's; the other methods are ranked by
# RetDev (ties: indiscernibility, then RTE) and the ranks averaged over the pairs. Every metric gets a
# seed mean and, with three seeds or more, a 95% bootstrap CI (with two, the two seeds' range); a
# Friedman test and Nemenyi critical difference over the methods outside the failed group say which
# rank gaps are significant, and methods within it of each other form tied groups. The paper's tables are written as Markdown and LaTeX, the figures as PDF and
# PNG, and everything goes into one self-contained HTML report.

# %% tags=["parameters"]
name = "demo"  # names the outputs: <out>/reports/<name>/ and <out>/figures/<name>/
attack = ["demo"]  # attack configs, each "NAME" or "NAME@dataset/arch"
replicates = []  # attack entries as `attack`, from a replicate sweep: τ
sweeps = []  # sweep configs, 2 replicates a pair (ours first): τ vs budget
out = "outputs"  # root of the reports/ and figures/ folders
figures = None  # tables and figures folder; None: <out>/figures/<name> (paper: figures)
from_results = False  # True: reuse <out>/reports/<name>/ (results and curves), asking the store nothing
level = 0.95  # bootstrap confidence level
n_boot = 2000  # bootstrap resamples
alpha = 0.05  # Nemenyi significance level
friedman_by = "seed"  # Friedman blocks: "seed" (dataset, arch, seed) or "pair" (dataset, arch)
loss_seed = None  # seed of the MIA loss histograms; None: each config's first
nb = "outputs/nb"  # executed stage notebooks whose papermill run times the report lists
device = None  # None: each attack config's own device
store = "outputs/store"  # content-addressed artifact store
progress = True  # a line per collected config

# %%
from deepunlearn import config
from deepunlearn.stages import analyze

# %%
cfg = config.from_notebook("analyze", globals())

# %%
a = analyze.start(cfg)

# %%
table = analyze.collect(a)

# %% [markdown]
# The tidy results table: one row per (dataset, arch, method, seed) with every metric.

# %%
table

# %%
overall = analyze.rank(a)

# %% [markdown]
# Mean rank over the (dataset, arch) pairs a method passes, how often it failed, and the failed group
# (a method failing on more than half of the pairs).

# %%
overall

# %%
main = analyze.write_tables(a)

# %% [markdown]
# What the ranking rests on: data, models, seeds, search budget, machine, code version, what the
# intervals are, and whether any two methods differ significantly.

# %%
analyze.protocol(a)

# %% [markdown]
# The main table: RetDev (0 = the Retrained model's accuracies) and indiscernibility (1 = a Test MIA
# at chance), with the rank per pair, the tied group, and for a failed method the criterion it failed.

# %%
main

# %%
names = analyze.draw(a)

# %% [markdown]
# Accuracy gaps to the Retrained model: a good method sits near 0 on all three splits.

# %%
analyze.show(a, "gaps")

# %% [markdown]
# The trade-off: indiscernibility against RTE (log); up and to the right is better.

# %%
analyze.show(a, "tradeoff")

# %% [markdown]
# Critical-difference diagram of the methods outside the failed group: methods joined by a bar are
# not significantly different.

# %%
analyze.show(a, "critical-difference")

# %%
analyze.show(a, "rank-distribution")

# %%
report = analyze.write_report(a)

# %%
report
