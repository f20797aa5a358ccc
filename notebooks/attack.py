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
train = "demo"  # params/train/<train>.yaml: the data and recipe of the Original/Retrained models
methods = ["ft"]  # method ids (`deepunlearn methods`), or ["all"] for the 18 of the paper
plugins = []  # .py files (or module names) that register your own methods with @register_method
hparams = {}  # {method: {hyperparameter: value}}; what is missing takes the method's defaults
best = None  # a sweep config: take hyperparameters from outputs/sweeps/<best>/best.yaml
seeds = None  # list of model seeds; None: the train config's seeds
ulira = False  # also run U-LiRA on shadow models
ulira_methods = None  # methods U-LiRA attacks; None: `methods` (the paper: ft, msg, cfw, prmq, ct, kde)
ulira_splits = 8  # shadow train/held-out splits (the paper: 64)
ulira_forget_sets = 2  # forget sets per split (the paper: 10)
ulira_seed = 0  # initialisation seed of every shadow model (the paper: 0); must be among the seeds
ulira_epochs = None  # int: shadow O/R epochs; None: the train recipe's (the paper: 91 on CIFAR-10)
ulira_statistic = "logit"  # "logit": logit-scaled confidence; "correct": the reference code's 0/1 variant
ulira_share_original = True  # one Original per split; False: one per (split, forget set), as the paper
device = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
store = "outputs/store"  # content-addressed artifact store
progress = True  # show progress bars while training models

# %%
from deepunlearn import stages
from deepunlearn.stages import attack

# %%
cfg = stages.stage_config("attack", globals())

# %%
table = attack.run(cfg)

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
attack.plot_loss_histograms(cfg)

# %% [markdown]
# U-LiRA ROC curves on log axes (the low false-positive end is what matters); empty when `ulira` is off.

# %%
attack.plot_roc(cfg)
