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
# # Sweep: search each method's hyperparameters against the Retrained model
# One Optuna study per (dataset, architecture, method, seed), NSGA-III seeded by the model seed,
# four minimised objectives: a third of the retain, forget and validation accuracy gaps to the
# Retrained model, and 1 − indiscernibility of the validation MIA. The chosen trial per method
# is the one nearest the ideal point over all seeds' studies (spec F); it is written to
# `outputs/sweeps/<name>/<dataset>-<arch>/best.yaml`, which `notebooks/unlearn.py` takes with
# `best: <name>`.

# %% tags=["parameters"]
name = "demo"  # results go to outputs/sweeps/<name>/<dataset>-<arch>/ (best.yaml, SQLite studies)
profile = "demo"  # params/train/<profile>.yaml: data and recipe of the Original/Retrained models
dataset = None  # None: the profile's dataset
arch = None  # None: the profile's architecture
methods = ["ft"]  # method ids, or ["all"]
seeds = [0]  # one study per seed (the paper: 0, 1, 2)
n_trials = 8  # complete trials per study (the paper: 100)
replicate = 0  # independent replicate of the whole search: shifts every sampler seed (0: the paper's)
ulira = False  # search on U-LiRA shadows (spec G.2): one study per split s, forget set 0, not per seed
ulira_splits = 4  # with `ulira`: the splits 0..N-1 searched (the paper: 32 of its 64)
ulira_seed = 0  # with `ulira`: the shadows' initialisation seed (the attack's ulira_seed)
ulira_epochs = None  # with `ulira`: shadow O/R epochs, and E_max from them (the paper: 91, E_max 19)
storage = None  # None: SQLite per study; postgresql://user@host/db for many workers
join = True  # a worker left with no free study helps finish the others' (False: each study draws as one worker)
heartbeat = 60  # seconds between worker heartbeats; a trial silent for 2x this is retried
plugins = []  # .py files defining your own methods
device = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
store = "outputs/store"  # content-addressed artifact store
progress = True  # a line per trial

# %%
from deepunlearn import config
from deepunlearn.stages import sweep

# %%
cfg = config.from_notebook("sweep", globals())

# %%
ctx = sweep.context(cfg)

# %%
summary = sweep.run(ctx)

# %% [markdown]
# The chosen trial per method: its four objectives, its distance to the ideal point, and the
# total time spent searching that method.

# %%
summary

# %%
sweep.plot_fronts(ctx)
