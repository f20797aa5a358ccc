"""MSG (spec D.14): small-|G| conv weights re-initialised, kept weights' gradients ×0.1, warm-up/decay lr."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import clone_state
from deepunlearn.methods import run_method
from deepunlearn.methods.msg import lr_factor
from deepunlearn.models import create_model


@pytest.fixture(scope="module")
def small(tiny_data):
    """|D_r| = |D_f| = 16: the retain subset is all of D_r and each pass is one batch, so G is RNG-free."""
    return tiny_data.with_splits(retain=tiny_data.splits["retain"][:16])


def accumulated_gradient(model, data):
    """G = ∇CE(D_r) − ∇CE(D_f) in train mode, each set one batch (spec D.14 step 1)."""
    model = copy.deepcopy(model).train()
    for split, sign in (("retain", 1), ("forget", -1)):
        idx = data.indices(split)
        (sign * F.cross_entropy(model(data.inputs(idx)), data.labels[idx])).backward()
    return {n: p.grad for n, p in model.named_parameters()}


def conv_weights(model):
    return [n + ".weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def test_reinitialises_the_smallest_gradient_conv_weights(small):
    original = create_model("tinycnn", small.num_classes, seed=0)
    before = clone_state(original)
    model, _ = run_method("msg", original, small, {"epochs": 0, "batch_size": 16, "init_rate": 0.3})
    after = model.state_dict()
    grads = accumulated_gradient(original, small)
    for name in conv_weights(original):
        changed = after[name] != before[name]
        assert changed.sum().item() == round(0.3 * changed.numel()), name
        g = grads[name].abs()
        tol = 1e-5 * g.max().item()  # summation order differs slightly from the method's
        assert g[changed].max() <= g[~changed].min() + tol, name
    fresh = after["layer2.conv2.weight"][after["layer2.conv2.weight"] != before["layer2.conv2.weight"]]
    assert abs(fresh.std().item() / (2 / (16 * 9)) ** 0.5 - 1) < 0.15  # kaiming-normal, fan_out, relu
    assert torch.equal(after["fc.weight"], before["fc.weight"])  # Linear untouched
    # the gradient passes ran in train mode: BN running statistics moved
    assert not torch.equal(after["bn1.running_mean"], before["bn1.running_mean"])


def test_kept_conv_weights_get_a_tenth_of_the_gradient(small):
    """One fine-tuning step (one batch, E = 1, momentum 0, wd 0) against plain SGD from the same start."""
    original = create_model("tinycnn", small.num_classes, seed=0)
    hp = {"batch_size": 16, "init_rate": 0.3, "momentum": 0.0, "weight_decay": 0.0, "lr": 0.1}
    start, _ = run_method("msg", original, small, {**hp, "epochs": 0})
    stepped, _ = run_method("msg", original, small, {**hp, "epochs": 1})  # factor 1 for E = 1
    ref = copy.deepcopy(start).train()
    x, y = small.inputs(small.indices("retain")), small.labels[small.indices("retain")]
    grads = dict(zip([n for n, _ in ref.named_parameters()],
                     torch.autograd.grad(F.cross_entropy(ref(x), y), list(ref.parameters()))))
    convs = conv_weights(original)
    for name, p in start.named_parameters():
        mult = torch.ones_like(p)
        if name in convs:  # 1.0 on re-initialised entries, 0.1 on kept ones
            mult = torch.where(p != original.state_dict()[name], 1.0, 0.1)
        torch.testing.assert_close(stepped.state_dict()[name], p.detach() - 0.1 * mult * grads[name],
                                   rtol=1e-4, atol=1e-7)


def test_tinyvit_linear_layers_are_not_reinitialised(tiny_data):
    data = tiny_data.with_splits(retain=tiny_data.splits["retain"][:4], forget=tiny_data.splits["forget"][:4])
    vit = create_model("tinyvit", data.num_classes, seed=0)
    before = clone_state(vit)
    model, _ = run_method("msg", vit, data, {"epochs": 0, "batch_size": 4, "init_rate": 0.5})
    after = model.state_dict()
    linears = [n for n, m in vit.named_modules() if isinstance(m, nn.Linear)]
    assert len(linears) > 20
    for name in linears:
        assert torch.equal(after[name + ".weight"], before[name + ".weight"]), name
    for name in conv_weights(vit):
        assert (after[name] != before[name]).sum().item() == round(0.5 * before[name].numel()), name
    assert type(model) is type(vit) and after.keys() == before.keys()


@pytest.mark.parametrize("epochs, factors", [
    (5, [1 / 3, 2 / 3, 1, 2 / 3, 1 / 3]),
    (10, [.2, .4, .6, .8, 1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6]),
    (1, [1.0]),
])
def test_linear_warmup_then_decay(epochs, factors):
    assert [lr_factor(e, epochs) for e in range(epochs)] == pytest.approx(factors)
