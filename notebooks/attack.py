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
# # Attack: accuracies, population MIA and U-LiRA
# For every seed, the Original, the Retrained model and each method's unlearned model are scored with
# every spec E metric: accuracies (RA, FA, VA, TA), the population MIA on forget vs val and forget vs
# test losses, indiscernibility, retention ratios, RetDev, RTE, SAPE and weight distances to the
# Retrained model. U-LiRA (spec G) then attacks each method per sample, with shadow models on seeded
# split halves, and reads it between the Original (leaks) and the Retrained model (chance).
# Everything is cached in the store: rerunning only computes what is missing.

# %% tags=["parameters"]
profile = "demo"  # params/train/<profile>.yaml: the data and recipe of the Original/Retrained models
dataset = None  # None: the profile's dataset
arch = None  # None: the profile's architecture
methods = ["ft"]  # method ids, or ["all"]; O and R always added
plugins = []  # .py files (or modules) defining your own methods
hparams = {}  # {method: {hyperparameter: value}}; missing: defaults
best = None  # a sweep name: its best.yaml for this (dataset, arch) gives the hyperparameters
seeds = None  # None: the profile's seeds
ulira = False  # also run U-LiRA
ulira_methods = None  # methods U-LiRA attacks (None: `methods`); O and R always
ulira_splits = 8  # shadow train/held-out splits (the paper: 64)
ulira_forget_sets = 2  # forget sets per split (the paper: 10)
ulira_seed = 0  # initialisation seed of every shadow (the paper: 0); its rows get the U-LiRA columns
ulira_epochs = None  # shadow O/R epochs (None: the recipe's; the paper: 91 on CIFAR-10)
ulira_statistic = "logit"  # "logit" (logit-scaled confidence) or "correct" (the reference's 0/1)
ulira_share_original = True  # one Original per split (False: per (split, forget set), the paper)
ulira_best = None  # a U-LiRA sweep (`ulira: true`) whose best.yaml tunes ulira_methods; None: `best`
device = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
store = "outputs/store"  # content-addressed artifact store
progress = True  # a line per model trained or attacked

# %%
from deepunlearn import config
from deepunlearn.stages import attack

# %%
cfg = config.from_notebook("attack", globals())

# %%
ctx = attack.context(cfg)

# %%
table = attack.run(ctx)

# %% [markdown]
# One row per (dataset, arch, method, seed). The Retrained model is the target: RetDev 0, Test MIA
# near 0.5 (indiscernibility near 1). RTE above 1 means faster than retraining. The `ulira_*`
# columns fill the rows of `ulira_seed`: an AUC near the Retrained model's is good, near the
# Original's is a leak.

# %%
table

# %% [markdown]
# Loss histograms of the forget and test sets: the population MIA separates these two.

# %%
attack.plot_loss_histograms(ctx)

# %% [markdown]
# U-LiRA ROC curves on log axes (the low false-positive end is what matters); empty when `ulira` is off.

# %%
attack.plot_roc(ctx)
