"""CF-k (spec D.11): only the last k blocks and the classifier change; BN statistics frozen (eval mode)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from conftest import clone_state
from deepunlearn.methods import get_method, run_method
from deepunlearn.methods.cfk import decayed_lr, last_k
from deepunlearn.models import create_model

TRAINABLE = ("layer2.", "fc.")  # tinycnn has two blocks: k = 1 is layer2, plus the classifier


def test_only_last_k_blocks_and_classifier_change(tiny_data):
    original = create_model("tinycnn", tiny_data.num_classes, seed=0)
    before = clone_state(original)
    model, _ = run_method("cfk", original, tiny_data, {"epochs": 2, "batch_size": 16, "num_blocks": 1, "lr": 0.05})
    after = model.state_dict()
    for name, p in original.named_parameters():
        changed = not torch.equal(after[name], before[name])
        assert changed == name.startswith(TRAINABLE), name
    for name, _ in original.named_buffers():  # eval mode: running statistics everywhere untouched
        assert torch.equal(after[name], before[name]), name
    assert all(p.requires_grad for p in model.parameters())  # handed back as a plain trainable module


def test_two_full_batch_steps_match_sgd_with_l2_pull_to_start(tiny_data):
    """One batch per epoch, E = 2 (no decay yet): θ₂ = θ₁ − lr(∇CE(θ₁) + λ(θ₁ − θ₀)), plain SGD, eval mode."""
    data = tiny_data.with_splits(retain=tiny_data.splits["retain"][:32])
    lr, lam = 0.05, 3.0
    original = create_model("tinycnn", data.num_classes, seed=0)
    model, _ = run_method("cfk", original, data, {"epochs": 2, "batch_size": 32, "num_blocks": 1, "lr": lr,
                                                  "sgda_weight_decay": lam})
    ref = copy.deepcopy(original).eval()
    train = [p for n, p in ref.named_parameters() if n.startswith(TRAINABLE)]
    theta0 = [p.detach().clone() for p in train]
    x, y = data.inputs(data.indices("retain")), data.labels[data.indices("retain")]
    for _ in range(2):
        grads = torch.autograd.grad(F.cross_entropy(ref(x), y), train)
        with torch.no_grad():
            for p, g, p0 in zip(train, grads, theta0):
                p -= lr * (g + lam * (p - p0))
    for name, p in ref.named_parameters():
        torch.testing.assert_close(model.state_dict()[name], p.detach(), rtol=1e-4, atol=1e-6)


def test_k_at_least_the_number_of_blocks_trains_all_blocks(tiny_data):
    original = create_model("tinycnn", tiny_data.num_classes, seed=0)
    before = clone_state(original)
    model, _ = run_method("cfk", original, tiny_data, {"epochs": 1, "batch_size": 16, "num_blocks": 7, "lr": 0.05})
    for name, _ in original.named_parameters():
        assert torch.equal(model.state_dict()[name], before[name]) == name.startswith(("conv1", "bn1")), name


def test_tinyvit_blocks_are_stages_1_to_3_plus_head_fc():
    vit = create_model("tinyvit", 10)
    assert last_k(vit, 1) == [vit.stages[3], vit.head.fc]
    assert last_k(vit, 10) == [vit.stages[1], vit.stages[2], vit.stages[3], vit.head.fc]


def test_tinyvit_k1_trains_stage_3_and_head_fc_only(tiny_data):
    """Several eval-mode steps on TinyViT (timm caches attention biases in eval mode: must not break)."""
    data = tiny_data.with_splits(retain=tiny_data.splits["retain"][:4])
    vit = create_model("tinyvit", data.num_classes, seed=0)
    before = clone_state(vit)
    model, _ = run_method("cfk", vit, data, {"epochs": 1, "batch_size": 2, "num_blocks": 1, "lr": 0.05})
    after = model.state_dict()
    for name, _ in vit.named_parameters():
        # in eval mode the reference's TinyViT holds its attention biases as constants (no gradient)
        trained = name.startswith(("stages.3.", "head.fc.")) and "attention_biases" not in name
        assert torch.equal(after[name], before[name]) != trained, name
    copy.deepcopy(model)  # no graph left behind in timm's eval-mode attention-bias cache


@pytest.mark.parametrize("epochs, factors", [
    (10, [1, 1, 1, 1, 1, 1, .5, .5, .5, .25]),  # d = 5, 8, 9: decays from e = 6 and e = 9
    (4, [1, 1, 1, .5]),  # d = 2, 3, 3
])
def test_step_decay_at_half_80_and_90_percent(epochs, factors):
    assert [decayed_lr(1.0, 0.5, e, epochs) for e in range(epochs)] == factors


def test_dead_hyperparameters_not_searched():
    searched = get_method("cfk").searched()
    assert "sgda_learning_rate" not in searched and "momentum" not in searched
    assert set(searched) == {"epochs", "batch_size", "sgda_decay_rate", "sgda_weight_decay", "lr", "num_blocks"}
