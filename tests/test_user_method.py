"""A user's own method, in a file of their own, runs through the unlearn stage like a built-in."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deepunlearn.config import make_config
from deepunlearn.errors import UserError
from deepunlearn.methods import get_method
from deepunlearn.stages import unlearn

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    return next(b for b in blocks if "@register_method" in b)


def test_readme_method_runs_through_unlearn_stage(tmp_path, monkeypatch):
    plugin = tmp_path / "my_method.py"
    plugin.write_text(readme_example())
    cfg = make_config("unlearn", profile="tiny", methods=["mine", "ft"], plugins=[str(plugin)],
                      hparams={"mine": {"epochs": 1}, "ft": {"epochs": 1}}, device="cpu",
                      store=str(tmp_path / "store"), progress=False)
    table = unlearn.run(cfg)
    assert get_method("mine").display == "Mine"
    row = table[table.id == "mine"].iloc[0]
    orig = table[table.id == "original"].iloc[0]
    assert row.time_s > 0 and (row.RA, row.FA) != (orig.RA, orig.FA)  # it trained
    assert len(list((tmp_path / "store" / "unlearned").glob("*mine*/DONE"))) == 1


def test_missing_plugin_file_is_one_sentence(tmp_path):
    cfg = make_config("unlearn", profile="tiny", plugins=[str(tmp_path / "nope.py")], device="cpu")
    with pytest.raises(UserError, match="nope.py does not exist"):
        unlearn.run(cfg)
