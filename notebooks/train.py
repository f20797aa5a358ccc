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
# # Train: the Original and Retrained models
# For every seed, the **Original** model is trained on retain ∪ forget and the **Retrained** model
# (the gold standard) on retain only, from the same initialisation, with the spec C recipe
# (SGD lr 0.1, momentum 0.9, weight decay 5e-4, per-epoch cosine, train-state augmentation).
# Both are cached in the store: rerunning only trains what is missing.

# %% tags=["parameters"]
dataset = "fashion_mnist"  # registry name: mnist, fashion_mnist, cifar10, cifar100, utkface, digits
arch = "smallresnet"  # resnet18, tinyvit, smallresnet (CPU demo), tinycnn (tests)
seeds = [0]  # model initialisation seeds (the paper: 0-9)
subset = None  # train on a seeded sample of this many official-train images; None: all
epochs = None  # None: the dataset's recipe (spec C: 50, CIFAR 182)
batch_size = None  # None: the dataset's recipe (256, UTKFace 128)
lr = 0.1  # SGD learning rate
momentum = 0.9  # SGD momentum
weight_decay = 5e-4  # SGD weight decay
device = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
store = "outputs/store"  # content-addressed artifact store (relative: under the project root)
data_root = None  # folder of the datasets; None: $DEEPUNLEARN_DATA, <root>/data, system copies
download = False  # fetch a missing dataset with torchvision (never in tests)
progress = True  # a progress line per training run

# %%
from deepunlearn import config
from deepunlearn.stages import train

# %%
cfg = config.from_notebook("train", globals())

# %%
table = train.run(cfg)

# %% [markdown]
# Accuracy of each model on each split, and its training time in seconds. The Original should
# score higher on *forget* than the Retrained model: that gap is the memorisation unlearning removes.

# %%
table
