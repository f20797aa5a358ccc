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
train = "demo"  # params/train/<train>.yaml: the data and recipe of the Original/Retrained models
methods = ["ft"]  # method ids (`deepunlearn methods`), or ["all"] for the 18 of the paper
plugins = []  # .py files (or module names) that register your own methods with @register_method
hparams = {}  # {method: {hyperparameter: value}}; what is missing takes the method's defaults
best = None  # a sweep config: take hyperparameters from outputs/sweeps/<best>/best.yaml
seeds = None  # list of model seeds; None: the train config's seeds
device = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
store = "outputs/store"  # content-addressed artifact store
progress = True  # show progress bars while training references

# %%
from deepunlearn import stages
from deepunlearn.stages import unlearn

# %%
cfg = stages.stage_config("unlearn", globals())

# %%
table = unlearn.run(cfg)

# %% [markdown]
# Retain (RA), forget (FA), validation (VA) and test (TA) accuracy and wall time per method and
# seed. A good method lands near the Retrained row: FA close to the Retrained model's FA, RA and TA
# kept, in a fraction of the retraining time.

# %%
table
