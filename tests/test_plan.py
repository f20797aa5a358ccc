"""deepunlearn plan: the counts of a protocol follow its params files and the spec (hours are measured, not asserted)."""

from __future__ import annotations

import pytest

from deepunlearn import plan


@pytest.fixture(autouse=True)
def fast_speed(monkeypatch):
    # the counts do not depend on the device's speed: a fixed one keeps the test to its arithmetic
    monkeypatch.setattr(plan, "measure", lambda *a, **k: plan.Speed(1e-3, 1e-4, "test device"))


def test_the_paper_plan_counts_the_protocol_of_the_spec():
    table, _ = plan.plan("paper", "cpu")
    rows = table.set_index(["pair", "stage"])
    assert len(table[table.pair != "all pairs"]["pair"].unique()) == 10
    for pair in ("mnist/resnet18", "utkface/tinyvit"):
        assert rows.loc[(pair, "train"), "models"] == 20  # O and R of 10 seeds (spec B.3, C)
        assert rows.loc[(pair, "sweep"), "trials"] == 18 * 3 * 100  # spec F
        assert rows.loc[(pair, "unlearn"), "models"] == 18 * 10
    # spec G: U-LiRA on CIFAR-10 / ResNet-18 only: 640 Originals + 640 Retrained + 6 methods x 640
    assert rows.loc[("cifar10/resnet18", "attack"), "models"] == 640 + 640 + 6 * 640
    assert rows.loc[("cifar10/tinyvit", "attack"), "models"] == 0
    # spec G.2: FT, MSG, CFW, PRMQ, CT, KDE each searched on 32 splits x 200 trials
    assert rows.loc[("cifar10/resnet18", "ulira-sweep"), "trials"] == 6 * 32 * 200
    assert ("cifar10/tinyvit", "ulira-sweep") not in rows.index
    assert rows.loc[("all pairs", "sweep"), "trials"] == 54_000  # spec section 0's total
    assert rows.loc[("all pairs", "total"), "device_hours"] == pytest.approx(table[table.pair != "all pairs"]
                                                                              ["device_hours"].sum())


def test_the_demo_plan_is_its_one_pair():
    table, _ = plan.plan("demo", "cpu")
    assert set(table["pair"]) == {"fashion_mnist/smallresnet", "all pairs"}
    rows = table.set_index(["pair", "stage"])
    assert rows.loc[("fashion_mnist/smallresnet", "sweep"), "trials"] == 18 * 1 * 8
    assert rows.loc[("fashion_mnist/smallresnet", "unlearn"), "models"] == 18 * 2
