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
# # Unlearn: apply methods to the Original model of each seed
# Each method gets a private copy of the Original model and the retain, forget and validation
# splits; the whole call is timed (spec D.0). The unlearned model, its time and its accuracies are
# stored, so a rerun only computes what is missing. The Original and Retrained rows are the yardsticks.

# %% tags=["parameters"]
profile = "demo"  # params/train/<profile>.yaml: the data and recipe of the Original/Retrained models
dataset = None  # None: the profile's dataset
arch = None  # None: the profile's architecture
methods = ["ft"]  # method ids, or ["all"] for the 18
plugins = []  # .py files (or modules) defining your own methods
hparams = {}  # {method: {hyperparameter: value}}; missing: defaults
best = None  # a sweep name: its best.yaml for this (dataset, arch) gives the hyperparameters
seeds = None  # None: the profile's seeds
device = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
store = "outputs/store"  # content-addressed artifact store
progress = True  # a line per run

# %%
from deepunlearn import config
from deepunlearn.stages import unlearn

# %%
cfg = config.from_notebook("unlearn", globals())

# %%
table = unlearn.run(cfg)

# %% [markdown]
# Retain (RA), forget (FA), validation (VA) and test (TA) accuracy and wall time per method and
# seed. A good method lands near the Retrained row: FA close to the Retrained model's FA, RA and TA
# kept, in a fraction of the retraining time.

# %%
table
