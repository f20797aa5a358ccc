"""PRMQ (spec D.16): global L1 pruning with one threshold, re-init of the zeros, max_iters + 1 steps, fp16."""

from __future__ import annotations

import copy
import math

import torch
from torch.nn.utils import prune

from conftest import clone_state
from deepunlearn.methods import SearchContext, final_hparams, get_method, run_method
from deepunlearn.methods.prmq import global_l1_prune, prunable, reinit_zeros
from deepunlearn.methods.space import NONNEG, RecordingTrial
from deepunlearn.models import create_model


def fresh():
    model = create_model("tinycnn", 10, seed=0)
    with torch.no_grad():
        model.fc.bias.copy_(torch.linspace(-0.5, 0.5, 10))  # non-zero biases compete for the threshold
    return model


def named_prunable(model) -> list[tuple[str, torch.Tensor]]:
    """(state_dict key, tensor) of every prunable tensor."""
    names = {id(m): n for n, m in model.named_modules()}
    return [(f"{names[id(m)]}.{name}", getattr(m, name)) for m, name in prunable(model)]


def test_global_prune_zeroes_the_smallest_entries_across_all_layers_with_one_threshold():
    model = fresh()
    before = clone_state(model)
    tensors = named_prunable(model)
    total = sum(t.numel() for _, t in tensors)
    k = global_l1_prune(model, 0.6)
    assert k == round(0.6 * total)
    pruned = torch.cat([(t == 0).flatten() for _, t in tensors])
    assert pruned.sum().item() == k
    old = torch.cat([before[n].abs().flatten() for n, _ in tensors])
    assert old[pruned].max() <= old[~pruned].min()  # one global threshold over weights and biases
    per_layer = {n: (t == 0).float().mean().item() for n, t in tensors}
    assert max(per_layer.values()) - min(per_layer.values()) > 0.1  # not a per-layer fraction
    # same entries as torch's global L1 pruning; keys stay plain (no weight_orig / weight_mask)
    ref = fresh()
    prune.global_unstructured(prunable(ref), pruning_method=prune.L1Unstructured, amount=0.6)
    for m, name in prunable(ref):
        prune.remove(m, name)
    assert model.state_dict().keys() == before.keys()
    for n, t in model.state_dict().items():
        assert torch.equal(t, ref.state_dict()[n]), n


def test_reinit_redraws_only_zero_weights_within_the_fan_in_bound():
    model = fresh()
    global_l1_prune(model, 0.5)
    pruned = clone_state(model)
    reinit_zeros(model)
    for key, t in named_prunable(model):
        new, old = t.detach(), pruned[key]
        zero = old == 0
        if key.endswith("bias"):
            assert torch.equal(new, old)  # pruned biases stay 0
            continue
        assert torch.equal(new[~zero], old[~zero])
        assert (new[zero] != 0).all()
        assert new[zero].abs().max() <= 1 / math.sqrt(t[0].numel())  # fan_in = c_in · k_h · k_w


def test_prmq_runs_max_iters_plus_one_steps_and_returns_fp16_representable_weights(tiny_data, monkeypatch):
    monkeypatch.setitem(get_method("prmq").domains, "lr", NONNEG)  # lr 0 is no user value, but it freezes SGD here
    original = fresh()
    before = clone_state(original)
    # 48 retain / batch 16 = 3 batches; epochs 1.5 → max_iters = int(4.5) = 4 → 5 train-mode steps
    hp = {"lr": 0.0, "epochs": 1.5, "batch_size": 16, "prune_amount": 0.5}
    model, _ = run_method("prmq", original, tiny_data, hp)
    assert model.bn1.num_batches_tracked.item() == 5
    assert not model.training
    state = model.state_dict()
    assert state.keys() == before.keys()
    for n, t in state.items():
        if t.is_floating_point():
            assert t.dtype == torch.float32 and torch.equal(t, t.half().float()), n
    # lr 0: the kept half of the weights is the Original's, rounded to fp16
    pruned = copy.deepcopy(original)
    global_l1_prune(pruned, 0.5)
    for n, p in pruned.named_parameters():
        kept = p != 0
        assert torch.equal(state[n][kept], before[n][kept].half().float()), n


class _Answer(RecordingTrial):
    """A trial answering every float with 3.7."""

    def suggest_float(self, name, low, high, log=False, step=None):
        return 3.7


def test_search_trials_use_float_epochs_and_final_runs_truncate_them():
    # the reference casts every `*num_epochs` to int for the final runs, PRMQ's float epochs included
    assert get_method("prmq").space(_Answer(), SearchContext())["epochs"] == 3.7  # what a trial runs
    final = final_hparams("prmq", {"epochs": 3.7, "prune_amount": 0.3, "lr": 0.01})
    assert final["epochs"] == 3 and type(final["epochs"]) is int  # truncated, not rounded to 4
    assert final["prune_amount"] == 0.3 and final["lr"] == 0.01 and final["batch_size"] == 64
    assert final_hparams("prmq", {"epochs": 9.99})["epochs"] == 9
