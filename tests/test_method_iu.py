"""IU (spec D.10): θ moves by exactly α·k, k the WoodFisher recursion over the first ~1,002 retain samples."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from conftest import clone_state
from deepunlearn.methods import get_method, iu, run_method
from deepunlearn.models import create_model


def per_sample_grads(model, x, y):
    """Per-sample CE gradients (eval mode), flattened, by torch.func rather than batch-1 backward passes."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def loss(p, xi, yi):
        return F.cross_entropy(functional_call(model, (p, buffers), (xi[None],)), yi[None])

    g = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    return torch.cat([g[n].flatten(1) for n in params], 1).double()


def expected_step(model, data, alpha, n_samples, big_n):
    """α·k recomputed from the spec: v from summed gradients, then the WoodFisher recursion."""
    model.eval()
    xf, yf = data.inputs(data.indices("forget")), data.labels[data.indices("forget")]
    xr, yr = data.inputs(data.indices("retain")), data.labels[data.indices("retain")]
    n_f, n_r = len(yf), len(yr)
    g_f = per_sample_grads(model, xf, yf).sum(0)
    grads_r = torch.cat([per_sample_grads(model, xr[i:i + 256], yr[i:i + 256]) for i in range(0, n_r, 256)])
    v = g_f / (n_f + n_r) - grads_r.sum(0) * n_f / ((n_f + n_r) * n_r)
    k, o = v.clone(), grads_r[0].clone()
    for g in grads_r[1:n_samples]:
        t = o @ g
        k = k - (k @ g) / (big_n + t) * o
        o = o - t / (big_n + t) * o
    return alpha * k


def test_step_is_alpha_times_woodfisher(digits, monkeypatch):
    # N = 40 instead of 1000 keeps the batch-1 loop short; the retain set is longer than N + 2 samples,
    # so the cap of the recursion (stop after sample index N + 1) matters
    monkeypatch.setattr(iu, "WOODFISHER_N", 40)
    data = digits.with_splits(retain=digits.splits["retain"][:60], forget=digits.splits["forget"][:16])
    original = create_model("tinycnn", data.num_classes, seed=0)
    before = clone_state(original)
    model, _ = run_method("iu", original, data, {"batch_size": 16, "alpha": 0.2})
    step = torch.cat([(model.state_dict()[n] - before[n]).flatten() for n, _ in original.named_parameters()]).double()
    want = expected_step(original, data, 0.2, n_samples=42, big_n=40)
    assert (step - want).norm() <= 1e-4 * want.norm()
    # one more sample would give a measurably different step: the cap really is N + 2 samples
    longer = expected_step(original, data, 0.2, n_samples=43, big_n=40)
    assert (longer - want).norm() > 10 * (step - want).norm()
    # BN running statistics untouched (eval mode)
    for n, b in original.named_buffers():
        assert torch.equal(model.state_dict()[n], before[n]), n


def test_num_epochs_not_searched():
    assert get_method("iu").searched() == ["batch_size", "alpha"]
