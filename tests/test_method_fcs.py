"""FCS (spec D.13): stage 1 pushes forget outputs towards uniform; the forget round's contrast loss."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from deepunlearn.methods import get_method, run_method
from deepunlearn.methods.fcs import contrast_loss, uniform_kl
from deepunlearn.methods.space import NONNEG
from deepunlearn.models import create_model


def forget_outputs(model, data):
    """Softmax outputs on the whole forget set in train mode (one batch, as stage 1 sees it)."""
    model = copy.deepcopy(model).train()  # a copy: train-mode forwards move BN statistics
    with torch.no_grad():
        return model(data.inputs(data.indices("forget"))).softmax(1)


def entropy(p):
    return -(p * p.clamp_min(1e-12).log()).sum(1).mean().item()


def test_stage_one_pushes_forget_outputs_towards_uniform(tiny_data):
    original = create_model("tinycnn", tiny_data.num_classes, seed=0)
    # E = 0 runs stage 1 alone: one pass over D_f (a single batch of 16) with the KL-to-uniform loss
    model, _ = run_method("fcs", original, tiny_data, {"epochs": 0, "batch_size": 16, "lr": 0.5})
    p0, p1 = forget_outputs(original, tiny_data), forget_outputs(model, tiny_data)
    assert entropy(p1) > entropy(p0) + 1e-3
    assert entropy(p1) <= math.log(tiny_data.num_classes)
    kl = lambda p: F.kl_div(p.log(), torch.full_like(p, 1 / p.shape[1]), reduction="batchmean").item()
    assert kl(p1) < kl(p0)


def test_uniform_kl_is_zero_only_for_uniform_outputs():
    assert uniform_kl(torch.zeros(4, 10)).item() == 0
    assert uniform_kl(torch.randn(4, 10)).item() > 0


def test_contrast_loss_is_cross_entropy_to_a_uniform_target_over_the_retain_batch():
    z_f, z_r, tau = torch.randn(5, 10), torch.randn(7, 10), 1.15
    sim = z_f @ z_r.T / tau
    want = F.cross_entropy(sim, torch.full((5, 7), 1 / 7))
    torch.testing.assert_close(contrast_loss(z_f, z_r, tau), want)
    # minimal (log of the retain batch size) when every forget sample is equally similar to all retain ones
    assert abs(contrast_loss(torch.zeros(5, 10), z_r, tau).item() - math.log(7)) < 1e-6
    assert contrast_loss(z_f, z_r, tau).item() > math.log(7)


def test_retain_round_is_sgd_with_lr_scaled_by_batch_size_over_64(tiny_data, monkeypatch):
    """Stage 1 and the forget round switched off (lr 0): one retain batch gives one SGD step at lr·B/64.

    Train mode uses batch statistics, so the forget round's BN-statistic updates do not change that gradient.
    """
    for name in ("lr", "forget_lr"):  # lr 0 is no user value, but it switches those rounds off here
        monkeypatch.setitem(get_method("fcs").domains, name, NONNEG)
    data = tiny_data.with_splits(retain=tiny_data.splits["retain"][:16])
    original = create_model("tinycnn", data.num_classes, seed=0)
    hp = {"epochs": 1, "batch_size": 16, "lr": 0.0, "forget_lr": 0.0, "eta_min": 0.0,
          "retain_lr": 0.2, "retain_weight_decay": 0.01}
    model, _ = run_method("fcs", original, data, hp)
    ref = copy.deepcopy(original).train()
    x, y = data.inputs(data.indices("retain")), data.labels[data.indices("retain")]
    grads = torch.autograd.grad(F.cross_entropy(ref(x), y), list(ref.parameters()))
    step_lr = 0.2 * 16 / 64
    for (name, p), g in zip(ref.named_parameters(), grads):
        torch.testing.assert_close(model.state_dict()[name], p.detach() - step_lr * (g + 0.01 * p.detach()),
                                   rtol=1e-4, atol=1e-6)
