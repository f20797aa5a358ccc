"""RNI (spec D.19): classifier reset, partial epochs over 9 random tensors + all "bn", noise, fine epochs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepunlearn.methods import get_method, run_method
from deepunlearn.methods.rni import LAYER_SELECT, is_bn
from deepunlearn.methods.space import NONNEG
from deepunlearn.models import create_model

BASE = {"batch_size": 8, "fine_epochs": 0, "reset_epochs": 1, "noise_ratio": 1.0}


@pytest.fixture(scope="module")
def setup(tiny_data):
    """A fresh small ResNet (20 non-"bn" candidate tensors, ResNet names) and one batch of retain."""
    data = tiny_data.with_splits(retain=tiny_data.indices("retain")[:8], val=tiny_data.indices("val")[:8])
    original = create_model("smallresnet", data.num_classes, seed=0)
    reset, _ = run_method("rni", original, data, {**BASE, "epochs": 0})
    return original, data, reset


def names(model) -> list[str]:
    return [n for n, _ in model.named_parameters()]


def changed(a: torch.nn.Module, b: torch.nn.Module) -> set[str]:
    pb = dict(b.named_parameters())
    return {n for n, p in a.named_parameters() if not torch.equal(p, pb[n])}


def mirrored_choices(model, epochs: int) -> list[set[str]]:
    """The tensors RNI chooses per partial epoch: its numpy draws under the run seed (123)."""
    all_names = names(model)
    candidates = [i for i, n in enumerate(all_names) if not is_bn(n)]
    g = np.random.default_rng(123)
    out = []
    for ep in range(epochs):
        chosen = g.choice(candidates, LAYER_SELECT, replace=False)
        out.append({all_names[i] for i in chosen})
        if ep >= BASE["reset_epochs"]:
            g.choice(chosen, LAYER_SELECT, replace=False)  # the noisy subset (noise_ratio 1)
    return out


def test_bn_matching_follows_the_reference_names():
    resnet = names(create_model("resnet18", 10))
    assert "layer1.0.bn1.weight" in [n for n in resnet if is_bn(n)]
    assert not is_bn("layer2.0.downsample.1.weight")  # the downsample BatchNorm is a candidate (reference)
    vit = create_model("tinyvit", 10)
    bn_modules = {n for n, m in vit.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    # every BatchNorm and no LayerNorm
    assert {n.rsplit(".", 1)[0] for n in names(vit) if is_bn(n)} == bn_modules


def test_rni_resets_only_the_classifier_before_training(setup):
    original, _, reset = setup
    assert changed(original, reset) == {"fc.weight", "fc.bias"}


def test_partial_epoch_trains_only_the_chosen_tensors_and_every_bn(setup):
    original, data, reset = setup
    model, _ = run_method("rni", original, data, {**BASE, "epochs": 1, "lr": 0.1})
    moved = changed(model, reset)
    chosen = mirrored_choices(original, 1)[0]
    assert {n for n in moved if not is_bn(n)} == chosen
    assert {n for n in names(model) if is_bn(n)} <= moved
    assert all(p.requires_grad for p in model.parameters())  # restored after the partial epochs


def test_noise_has_the_requested_scale_and_skips_tensors_trained_earlier(setup, monkeypatch):
    monkeypatch.setitem(get_method("rni").domains, "lr", NONNEG)  # lr 0 is no user value, but it freezes SGD here
    original, data, reset = setup
    # epoch 0 is a reset epoch (no noise), epoch 1 adds noise; lr 0 so only the noise moves weights
    model, _ = run_method("rni", original, data, {**BASE, "epochs": 2, "lr": 0.0, "origin_noise": 0.5})
    first, second = mirrored_choices(original, 2)
    moved = changed(model, reset)
    assert moved == second - first and moved
    after, before = dict(model.named_parameters()), dict(reset.named_parameters())
    noise = torch.cat([(after[n] - before[n]).detach().flatten() for n in moved])
    assert abs(noise.std().item() - 0.5) < 0.05


def test_fine_epochs_train_every_tensor(setup, monkeypatch):
    monkeypatch.setitem(get_method("rni").domains, "lr", NONNEG)  # lr 0 is no user value, but it freezes SGD here
    original, data, reset = setup
    model, _ = run_method("rni", original, data, {**BASE, "epochs": 1, "fine_epochs": 1, "lr": 0.0,
                                                  "fine_lr": 0.1})
    assert changed(model, reset) == set(names(model))
