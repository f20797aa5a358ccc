"""NG+ (spec D.5): SGD on α·CE_r − (1 − α)·CE_f with the model in eval mode."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from conftest import train_tiny
from deepunlearn.methods import run_method
from deepunlearn.models import create_model
from deepunlearn.training import forward


@pytest.fixture(scope="module")
def original(tiny_data):
    return train_tiny("tinycnn", tiny_data)


def _ce(model, data, split):
    idx = data.indices(split)
    return F.cross_entropy(forward(model, data.inputs(idx)), data.labels[idx])


def test_one_step_is_alpha_retain_minus_forget_gradient(original, tiny_data):
    data = tiny_data.with_splits(retain=tiny_data.indices("retain")[:16])  # one retain and one forget batch
    lr, alpha = 0.01, 0.7
    ref = copy.deepcopy(original).eval()
    loss = alpha * _ce(ref, data, "retain") - (1 - alpha) * _ce(ref, data, "forget")
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    model, _ = run_method("ngplus", original, data, {"epochs": 1, "batch_size": 16, "lr": lr, "momentum": 0.0,
                                                     "weight_decay": 0.0, "alpha": alpha})
    for p0, g, p1 in zip(original.parameters(), grads, model.parameters()):
        torch.testing.assert_close(p1, p0 - lr * g, atol=1e-6, rtol=1e-4)


def test_alpha_one_is_eval_mode_finetuning(original, tiny_data):
    lr, mom, wd = 0.02, 0.9, 5e-4
    ref = copy.deepcopy(original).eval()
    opt = torch.optim.SGD(ref.parameters(), lr=lr, momentum=mom, weight_decay=wd)
    for _ in range(2):  # batch 48 = the whole retain set: one step per epoch
        opt.zero_grad()
        _ce(ref, tiny_data, "retain").backward()
        opt.step()
    model, _ = run_method("ngplus", original, tiny_data, {"epochs": 2, "batch_size": 48, "lr": lr, "momentum": mom,
                                                          "weight_decay": wd, "alpha": 1.0})
    for p_ref, p in zip(ref.parameters(), model.parameters()):
        torch.testing.assert_close(p, p_ref, atol=1e-6, rtol=1e-4)
    # frozen BatchNorm: the running statistics are the Original's, bit for bit
    for (name, b0), b1 in zip(original.named_buffers(), model.buffers()):
        assert torch.equal(b0, b1), name


def test_tinyvit_attention_biases_get_no_loss_gradient_but_still_decay_with_momentum(tiny_data):
    # two steps: timm's lazily cached attention biases would break the second backward
    data = tiny_data.with_splits(retain=tiny_data.indices("retain")[:4], forget=tiny_data.indices("forget")[:2])
    vit = create_model("tinyvit", data.num_classes, data.info.img_size, seed=0)
    biases = [n for n, _ in vit.named_parameters() if n.endswith("attention_biases")]
    assert len(biases) == 10
    with torch.no_grad():  # timm initialises them to 0, which decay would leave at 0
        for n in biases:
            vit.get_parameter(n).uniform_(0.5, 1.5)
    lr, wd, mom = 0.05, 0.1, 0.9
    model, _ = run_method("ngplus", vit, data, {"epochs": 1, "batch_size": 2, "lr": lr, "momentum": mom,
                                                "weight_decay": wd})
    before, after = dict(vit.named_parameters()), dict(model.named_parameters())
    # constants in the eval-mode forward (as the reference's TinyViT), yet they get a zero gradient, as
    # from the reference's 0·‖θ − θ_O‖²: SGD's decay and momentum move them. With a = lr·wd, two steps:
    # θ1 = (1 − a)θ0, buffer wd·θ0; θ2 = θ1 − lr·(0.9·wd·θ0 + wd·θ1) = ((1 − a)² − 0.9a)·θ0
    a = lr * wd
    decay = (1 - a) ** 2 - mom * a
    for n in biases:
        torch.testing.assert_close(after[n], decay * before[n], atol=1e-7, rtol=1e-6)
    assert not torch.allclose(after["head.fc.weight"], decay * before["head.fc.weight"])  # the loss moves the rest
