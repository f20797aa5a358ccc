"""Bad input through the real entry points: one line of error, exit status 2, the store as it was.

A tiny project's store (digits, tinycnn, 1 epoch: data, splits, Original and Retrained models) is built
once by the train stage; each case copies that store, damages something or passes a bad parameter, runs the command line again and
compares the store's listing (paths, sizes, sha256) before and after.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deepunlearn import cli
from deepunlearn.config import make_config
from deepunlearn.stages import train

ROOT = Path(__file__).resolve().parents[1]
TRAIN = "dataset: digits\narch: tinycnn\nseeds: [0]\nsubset: 300\nepochs: 1\nbatch_size: 64\ndevice: cpu\nprogress: false\n"
ATTACK = "profile: t\nmethods: [ft]\nhparams: {ft: {epochs: 1, batch_size: 64}}\ndevice: cpu\nprogress: false\n"


def listing(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under `root`: relative path -> (size, sha256)."""
    return {p.relative_to(root).as_posix(): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()} if root.is_dir() else {}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder with the notebooks, tiny train/attack params and a store the train stage filled."""
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    (root / "params" / "train").mkdir(parents=True)
    (root / "params" / "attack").mkdir()
    (root / "params" / "train" / "t.yaml").write_text(TRAIN)
    (root / "params" / "attack" / "t.yaml").write_text(ATTACK)
    train.run(make_config("train", **{**yaml.safe_load(TRAIN), "store": str(root / "outputs" / "store")}))
    return root


def run_fails(argv: list[str], store: Path, capsys) -> str:
    """Run `deepunlearn ARGV` in this process; it must fail cleanly. Returns its one error line."""
    capsys.readouterr()
    before = listing(store)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert listing(store) == before
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.fixture
def store(project, tmp_path, monkeypatch) -> Path:
    """A private copy of the project's store; the project is the root of every path ($DEEPUNLEARN_ROOT)."""
    copy = tmp_path / "store"
    shutil.copytree(project / "outputs" / "store", copy)
    monkeypatch.setenv("DEEPUNLEARN_ROOT", str(project))
    monkeypatch.chdir(tmp_path)  # anywhere: nothing depends on the working directory
    return copy


def only(store: Path, pattern: str) -> Path:
    (path,) = store.glob(pattern)
    return path


def garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)  # same size, different bytes
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 3)


@pytest.mark.parametrize("damage", [garble, truncate])
@pytest.mark.parametrize("pattern", ["model/*-retrain-*/weights.pt", "dataset/*/images.npy"])
def test_a_damaged_stored_file_stops_with_one_sentence(store, capsys, damage, pattern):
    target = only(store, pattern)
    damage(target)
    # the attack stage reads the data, then the Retrained model first (inside its notebook's kernel)
    err = run_fails(["run", "attack", "t", "--set", f"store={store}"], store, capsys)
    assert f"Stored artifact {target.parent} is damaged ({target.name} " in err
    assert "run `deepunlearn store repair" in err


@pytest.mark.parametrize(("hp", "expected"), [
    ("{ft: {epochs: -2}}", "Method 'ft': hyperparameter epochs=-2 is outside its domain ≥ 1"),
    ("{ft: {epochs: 0}}", "hyperparameter epochs=0 is outside its domain ≥ 1"),
    ("{ft: {lr: -1}}", "Method 'ft': hyperparameter lr=-1 is outside its domain > 0"),
    ("{ft: {lr: 0}}", "hyperparameter lr=0 is outside its domain > 0"),
    ("{ft: {batch_size: 0}}", "Method 'ft': hyperparameter batch_size=0 is outside its domain ≥ 1"),
    ("{ft: {epoch: 1}}", "Method 'ft' has no hyperparameter(s) epoch"),
])
def test_a_bad_hyperparameter_stops_before_any_work(store, capsys, hp, expected):
    # a fresh hyperparameter value means a model not in the store: nothing may be built for it
    err = run_fails(["run", "attack", "t", "--set", f"store={store}", "--set", f"hparams={hp}"], store, capsys)
    assert expected in err


@pytest.mark.parametrize(("sets", "expected"), [
    (["methods=[nope]"], "error: Unknown method 'nope'; choose one of "),
    (["plugins=[broken.py]"], "error: Plugin file broken.py has a syntax error at line 1"),
    (["methods=[ft]", "best=nosweep"], "error: No sweep results at STORE/../sweeps/nosweep/digits-tinycnn/best.yaml"),
    (["method=[ft]"], ("error: --set: unknown attack parameter `method` (did you mean `methods`?); the attack "
                       "parameters are profile, dataset, arch, methods, ")),
    (["zzz=2"], "error: --set: unknown attack parameter `zzz`; the attack parameters are profile, dataset,"),
    (["ulira=yes please"], "error: --set: `ulira` must be true/false, not 'yes please'; fix its value."),
    (["ulira_statistic=median", "ulira=true"], "error: ulira_statistic='median'; choose one of"),
])
def test_a_bad_attack_parameter_is_one_sentence(store, capsys, sets, expected):
    (store.parent / "broken.py").write_text("def broken(:\n")
    argv = ["run", "attack", "t", "--set", f"store={store}"]
    for s in sets:
        if "=" in s:
            key, _, value = s.partition("=")
            value = str(store.parent / value.strip("[]")) if key == "plugins" else value
            argv += ["--set", f"{key}=[{value}]" if key == "plugins" else f"{key}={value}"]
    err = run_fails(argv, store, capsys)
    expected = expected.replace("broken.py", str(store.parent / "broken.py")).replace("STORE/..", str(store.parent))
    assert err.startswith(expected)


@pytest.mark.parametrize(("train", "expected"), [
    ("arch: nonet\n", "error: Unknown model 'nonet'; choose one of "),
    ("dataset: nodata\n", "error: Unknown dataset 'nodata'; choose one of "),
    ("epochs: 0\n", "error: Train parameter epochs=0 must be an integer ≥ 1"),
])
def test_a_bad_train_parameter_stops_every_stage_before_any_work(store, capsys, train, expected):
    params = Path(os.environ["DEEPUNLEARN_ROOT"]) / "params"
    (params / "train" / "bad.yaml").write_text(TRAIN + train)
    try:
        err = run_fails(["run", "attack", "t", "--set", f"store={store}", "--set", "profile=bad"], store, capsys)
        assert err.startswith(expected)
        (params / "sweep").mkdir(exist_ok=True)
        (params / "sweep" / "bad.yaml").write_text(f"profile: bad\nstore: {store}\ndevice: cpu\n")
        err = run_fails(["run", "sweep", "bad"], store, capsys)
        assert err.startswith(expected)
        err = run_fails(["run", "sweep", "bad", "--worker", "1"], store, capsys)
        assert err.startswith(expected)
    finally:
        (params / "train" / "bad.yaml").unlink()


def test_a_sweep_whose_space_cannot_be_sampled_stops_before_any_trial(store, capsys, tmp_path):
    plugin = tmp_path / "badspace.py"
    plugin.write_text(
        "from dataclasses import dataclass\nfrom deepunlearn.methods import register_method\n\n\n"
        "@dataclass\nclass P:\n    lr: float = 0.1\n\n\n"
        "def space(trial, ctx):\n    return {'lr': trial.suggest_float('lr', 1.0, 0.1, log=True)}\n\n\n"
        "@register_method('badspace', display='B', hparams=P, space=space)\n"
        "def badspace(model, data, hp):\n    return model\n")
    params = Path(os.environ["DEEPUNLEARN_ROOT"]) / "params"
    (params / "sweep").mkdir(exist_ok=True)
    (params / "sweep" / "badspace.yaml").write_text(
        f"name: badspace\nprofile: t\nmethods: [badspace]\nplugins: [{plugin}]\nstore: {store}\ndevice: cpu\n")
    err = run_fails(["run", "sweep", "badspace", "--worker", "0"], store, capsys)
    assert err.startswith("error: The search space of method 'badspace' cannot be sampled (ValueError: ")
    assert not (store.parent / "sweeps").exists()  # no study was created


METHODS = "ft, ga, srl, ngplus, bt, scrub, salun, ff, iu, cfk, euk, fcs, msg, cfw, prmq, ct, kde, rni, original, retrain"
MAKE_CASES = {  # an unknown dataset, arch (train stage) and method (unlearn stage), as a user types them
    "dataset": ("train", TRAIN.replace("digits", "nodata"),
                "Unknown dataset 'nodata'; choose one of cifar10, cifar100, digits, fashion_mnist, mnist, utkface"),
    "arch": ("train", TRAIN.replace("tinycnn", "noarch"),
             "Unknown model 'noarch'; choose one of resnet18, smallresnet, tinycnn, tinyvit"),
    "method": ("unlearn", "profile: t\nmethods: [nomethod]\ndevice: cpu\nprogress: false\n",
               f"Unknown method 'nomethod'; choose one of {METHODS}"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(MAKE_CASES))
def test_a_bad_config_is_its_one_sentence_through_make_before_any_kernel_starts(case, tmp_path):
    stage, params, sentence = MAKE_CASES[case]
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(ROOT / name, tmp_path / name)  # copy2 keeps pyproject older than the setup stamp
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    for folder in ("train", stage):
        (tmp_path / "params" / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / "params" / "train" / "t.yaml").write_text(TRAIN)
    (tmp_path / "params" / stage / "bad.yaml").write_text(params)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    out = subprocess.run(["make", "--no-print-directory", stage, "CONFIG=bad"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, check=False, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and "Traceback" not in out.stderr + out.stdout
    # found by the command line's check before a kernel starts: nothing is written, not even a failed notebook
    assert errors == [f"error: {sentence}."]
    assert not (tmp_path / "outputs").exists()
    assert not (tmp_path / "outputs" / "store").exists()