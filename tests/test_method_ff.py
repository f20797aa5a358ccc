"""FF (spec D.9): noise with per-tensor variance α / Fisher, BN statistics untouched."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from conftest import clone_state
from deepunlearn.methods import get_method, run_method
from deepunlearn.methods.ff import fisher_diagonal, fisher_variance
from deepunlearn.models import create_model


def fisher_by_hand(model, data, batch_size):
    """The diagonal Fisher of spec D.9 step 2–3, one forward per class (no retained graph)."""
    model = copy.deepcopy(model).eval()
    acc = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    n_batches = 0
    for x, labels in data.batches("retain", batch_size):
        for y in range(data.num_classes):
            model.zero_grad()
            logits = model(x)
            weight = logits.softmax(1)[:, y].mean().detach()
            F.cross_entropy(logits, torch.full_like(labels, y)).backward()
            for n, p in model.named_parameters():
                acc[n] += weight * p.grad ** 2
        n_batches += 1
    return {n: a / n_batches for n, a in acc.items()}


def expected_variance(fisher, alpha, num_classes):
    """Spec D.9 step 4, written out independently of the method."""
    var = torch.minimum(1 / (fisher + 1e-8), torch.tensor(1e3))
    head = fisher.shape[0] == num_classes
    if head:
        var = torch.minimum(var, torch.tensor(1e2))
    var = alpha * var
    if var.ndim > 1:
        var = var.mean(1, keepdim=True).expand_as(var)  # averaged over input channels only
    return var * 10 if head or var.ndim == 1 else var


def test_noise_variance_follows_inverse_fisher(tiny_data):
    original = create_model("tinycnn", tiny_data.num_classes, seed=0)
    before = clone_state(original)
    alpha = 1e-3
    model, _ = run_method("ff", original, tiny_data, {"batch_size": 16, "alpha": alpha})
    fisher = fisher_by_hand(original, tiny_data, 16)
    after = model.state_dict()
    # BN running statistics (every buffer) untouched
    for n, b in original.named_buffers():
        assert torch.equal(after[n], before[n]), n
    groups = {"per-unit": [], "x10": [], "unclamped 1-D": []}
    for n, p in original.named_parameters():
        var = expected_variance(fisher[n], alpha, tiny_data.num_classes)
        z2 = ((after[n] - before[n]) / var.sqrt()) ** 2
        if z2.numel() >= 500:  # a big tensor on its own: E[z²] = 1
            assert abs(z2.mean().item() - 1) < 0.25, (n, z2.mean().item())
        head = p.shape[0] == tiny_data.num_classes
        groups["x10" if head or p.ndim == 1 else "per-unit"].append(z2.flatten())
        if p.ndim == 1:  # entries whose variance is 10α/F itself, not a clamp: sensitive to F's scale
            groups["unclamped 1-D"].append(z2[1 / (fisher[n] + 1e-8) < (1e2 if head else 1e3)])
    for name, zs in groups.items():
        mean = torch.cat(zs).mean().item()  # a 10× error in either group gives 0.1 or 10
        assert abs(mean - 1) < 0.3, (name, mean)


def test_no_epochs_searched():
    assert get_method("ff").searched() == ["batch_size", "alpha"]


def test_a_parameter_without_gradient_gets_zero_fisher_hence_the_capped_variance():
    # 1/(0 + 1e-8) is capped at 1e3, then × α; a 1-D tensor gets 10× that (spec D.9 step 4)
    alpha, c = 0.2, 10
    torch.testing.assert_close(fisher_variance(torch.zeros(4, 49), alpha, c), torch.full((4, 49), alpha * 1e3))
    torch.testing.assert_close(fisher_variance(torch.zeros(5), alpha, c), torch.full((5,), 10 * alpha * 1e3))


def test_tinyvit_attention_biases_get_the_capped_noise(tiny_data):
    # TinyViT's eval-mode attention biases get no gradient (the reference fails on them): zero Fisher, so
    # noise of variance α·1e3 (2-D tensors whose first dimension, the heads, is not C)
    data = tiny_data.with_splits(retain=tiny_data.indices("retain")[:2])  # one batch: 1 forward, C backwards
    vit = create_model("tinyvit", data.num_classes, data.info.img_size, seed=0)
    before = clone_state(vit)
    biases = [n for n, _ in vit.named_parameters() if n.endswith("attention_biases")]
    assert len(biases) == 10
    fisher = dict(zip([n for n, _ in vit.named_parameters()], fisher_diagonal(copy.deepcopy(vit), data, 2)))
    assert all(torch.equal(fisher[n], torch.zeros_like(fisher[n])) for n in biases)
    alpha = 0.2
    model, _ = run_method("ff", vit, data, {"batch_size": 2, "alpha": alpha})
    after = model.state_dict()
    z2 = torch.cat([((after[n] - before[n]) ** 2 / (alpha * 1e3)).flatten() for n in biases])
    assert z2.numel() > 10_000 and abs(z2.mean().item() - 1) < 0.1  # E[z²] = 1; 10× off would give 10 or 0.1
