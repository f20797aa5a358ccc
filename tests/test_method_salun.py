"""SalUn (spec D.8): a global top-fraction saliency mask on |∇ forget loss|, then masked random relabeling."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from conftest import below, clone_state, train_tiny
from deepunlearn.data.loader import make_generator
from deepunlearn.methods import run_method
from deepunlearn.methods.salun import forget_saliency, saliency_mask
from deepunlearn.models import create_model
from deepunlearn.training import forward


@pytest.fixture(scope="module")
def original(tiny_data):
    return train_tiny("tinycnn", tiny_data)


def test_mask_keeps_exactly_the_fraction_with_the_largest_saliency():
    torch.manual_seed(0)
    sal = [torch.rand(7, 3), torch.rand(11), torch.rand(2, 2, 5)]
    n = sum(s.numel() for s in sal)
    for threshold in (0.0, 0.3, 0.5, 1.0):
        mask = saliency_mask(sal, threshold)
        assert [m.shape for m in mask] == [s.shape for s in sal]
        kept = torch.cat([m.flatten() for m in mask])
        assert set(kept.unique().tolist()) <= {0.0, 1.0}
        assert kept.sum().item() == int(n * threshold)
        values = torch.cat([s.flatten() for s in sal])
        if 0 < threshold < 1:
            assert values[kept == 1].min() > values[kept == 0].max()


def test_saliency_is_abs_of_summed_batch_gradients_and_leaves_model_alone(original, tiny_data):
    model = copy.deepcopy(original).train()
    before = clone_state(model)
    sal = forget_saliency(model, tiny_data, 8, make_generator("cpu", 7))
    # the same two batches of 8, each with its own (zeroed) gradient: |g1 + g2|, not |g1 + (g1 + g2)|
    ref = copy.deepcopy(original).eval()
    total = [torch.zeros_like(p) for p in ref.parameters()]
    for x, y in tiny_data.batches("forget", 8, shuffle=True, generator=make_generator("cpu", 7)):
        for t, g in zip(total, torch.autograd.grad(-F.cross_entropy(forward(ref, x), y), list(ref.parameters()))):
            t += g
    for s, t in zip(sal, total):
        torch.testing.assert_close(s, t.abs())
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # eval mode: BN stats kept


def test_masked_out_weights_do_not_move_without_momentum_and_weight_decay(original, tiny_data):
    hp = {"epochs": 1, "batch_size": 16, "lr": 0.05, "momentum": 0.0, "weight_decay": 0.0, "threshold": 0.3}
    model, _ = run_method("salun", original, tiny_data, hp)
    # the method's generator is seeded with the run seed (123) and first shuffles D_f for the mask
    mask = saliency_mask(forget_saliency(copy.deepcopy(original), tiny_data, 16, make_generator("cpu", 123)), 0.3)
    moved = [~torch.isclose(p1, p0, rtol=0, atol=0) for p0, p1 in zip(original.parameters(), model.parameters())]
    assert not any((mv & (m == 0)).any() for mv, m in zip(moved, mask))
    kept = sum(m.sum() for m in mask)
    below(0.9 * kept, sum((mv & (m == 1)).sum() for mv, m in zip(moved, mask)), "salun: > 90% of kept weights move")


def test_tinyvit_saliency_over_several_batches(tiny_data):
    vit = create_model("tinyvit", tiny_data.num_classes, tiny_data.info.img_size, seed=0).train()
    data = tiny_data.with_splits(forget=tiny_data.indices("forget")[:4])
    sal = forget_saliency(vit, data, 2, make_generator("cpu", 0))  # two batches
    named = dict(zip([n for n, _ in vit.named_parameters()], sal))
    assert all(named[n].abs().sum() == 0 for n in named if n.endswith("attention_biases"))  # eval-mode constants
    assert named["head.fc.weight"].abs().sum() > 0
    assert vit.training
