"""GA (spec D.3): gradient ascent on the forget set only."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from conftest import same_weights
from deepunlearn.methods import run_method
from deepunlearn.models import create_model
from deepunlearn.training import Recipe, fit, forward, per_sample_loss


@pytest.fixture(scope="module")
def original(tiny_data):
    """A tinycnn that fits the tiny splits (the 2-epoch conftest model is still near uniform)."""
    model = create_model("tinycnn", tiny_data.num_classes, tiny_data.info.img_size, seed=0)
    fit(model, tiny_data, ["retain", "forget"], Recipe(epochs=20, batch_size=16, lr=0.2, augment=False), progress=False)
    return model


def test_ga_raises_forget_loss(original, tiny_data):
    before = per_sample_loss(original, tiny_data, "forget").mean()
    model, _ = run_method("ga", original, tiny_data, {"epochs": 3, "batch_size": 8, "lr": 0.05})
    assert per_sample_loss(model, tiny_data, "forget").mean() > before + 1.0


def test_ga_step_is_plus_lr_times_forget_gradient(original, tiny_data):
    # one batch holding all 16 forget samples, plain SGD: θ' = θ + lr·∇CE_f (train-mode BN)
    lr = 0.01
    ref = copy.deepcopy(original).train()
    loss = F.cross_entropy(forward(ref, tiny_data.inputs(tiny_data.indices("forget"))),
                           tiny_data.labels[tiny_data.indices("forget")])
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    model, _ = run_method("ga", original, tiny_data,
                          {"epochs": 1, "batch_size": 16, "lr": lr, "momentum": 0.0, "weight_decay": 0.0})
    for p0, g, p1 in zip(original.parameters(), grads, model.parameters()):
        torch.testing.assert_close(p1, p0 + lr * g, atol=1e-6, rtol=1e-4)


def test_ga_never_reads_the_retain_set(original, tiny_data, digits):
    other = tiny_data.with_splits(retain=digits.splits["retain"][100:140])
    hp = {"epochs": 2, "batch_size": 8}
    a, _ = run_method("ga", original, tiny_data, hp)
    b, _ = run_method("ga", original, other, hp)
    assert same_weights(a, b)
