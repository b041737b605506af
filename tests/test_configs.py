"""The shipped Hydra configs: layout, parse, and values the trainers accept."""

import ast
from pathlib import Path

import pytest
import yaml

from asu_plugin.registration import TRAINERS

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
BENCHMARKS = ("tofu", "muse", "wmdp")


def init_args(module, cls_name):
    """The named arguments of ``cls_name.__init__`` in ``asu_plugin/<module>.py``."""
    tree = ast.parse((ROOT / "asu_plugin" / f"{module}.py").read_text())
    init = next(
        node
        for cls in tree.body
        if isinstance(cls, ast.ClassDef) and cls.name == cls_name
        for node in cls.body
        if isinstance(node, ast.FunctionDef) and node.name == "__init__"
    )
    return {a.arg for a in init.args.args[1:]}


def asu_init_args():
    """ASU_GD's arguments and those of the base it extends."""
    return init_args("asu/trainers", "ASU_GD") | init_args("core/trainer", "Unlearner")


def load(path):
    return yaml.safe_load(path.read_text())


def test_layout_matches_the_host():
    # one trainer config per registered trainer, named like it
    assert sorted(p.name for p in (CONFIGS / "trainer").iterdir()) == sorted(
        f"{name}.yaml" for name in TRAINERS
    )
    for bench in BENCHMARKS:
        assert (CONFIGS / "experiment" / "unlearn" / bench / "asu.yaml").is_file()
    assert (ROOT / "asu_plugin" / "configs").resolve() == CONFIGS


def test_trainer_method_args_are_the_trainers_arguments_with_paper_values():
    gd, kl = (
        load(CONFIGS / "trainer" / "ASU_GD.yaml"),
        load(CONFIGS / "trainer" / "ASU_KL.yaml"),
    )
    assert set(gd["method_args"]) == asu_init_args()
    assert gd["method_args"] == {
        "temperature": 2.3,
        "layers": None,
        "gamma": 0.1,
        "alpha": 1.0,
        "retain_loss_type": "NLL",
        "peft": None,
        "logits_chunk_size": 256,
    }
    assert kl == {
        "defaults": ["ASU_GD"],
        "handler": "ASU_KL",
        "method_args": {"retain_loss_type": "KL"},
    }


@pytest.mark.parametrize(
    "bench, temperature, gamma",
    [("tofu", 2.3, 0.1), ("muse", 2.0, 0.35), ("wmdp", 2.0, 0.1)],
)
def test_experiments_are_global_and_use_asu(bench, temperature, gamma):
    path = CONFIGS / "experiment" / "unlearn" / bench / "asu.yaml"
    assert "# @package _global_" in path.read_text().splitlines()
    cfg = load(path)
    assert {"override /trainer": "ASU_KL"} in cfg["defaults"]
    method_args = cfg["trainer"]["method_args"]
    assert set(method_args) <= asu_init_args()
    assert (method_args["temperature"], method_args["gamma"]) == (temperature, gamma)


def test_asu_rmu_is_the_hosts_rmu_with_the_teacher_knobs():
    trainer = load(CONFIGS / "trainer" / "ASU_RMU.yaml")
    assert trainer == {
        "defaults": ["RMU"],
        "handler": "ASU_RMU",
        "method_args": {"temperature": 100.0, "layers": None},
    }
    assert set(trainer["method_args"]) == init_args("asu/trainers", "ASU_RMU")
    path = CONFIGS / "experiment" / "unlearn" / "wmdp" / "asu_rmu.yaml"
    assert "# @package _global_" in path.read_text().splitlines()
    cfg = load(path)
    assert cfg["defaults"] == [
        "/experiment/unlearn/wmdp/default",
        {"override /trainer": "ASU_RMU"},
    ]
    method_args = cfg["trainer"]["method_args"]
    assert (method_args["temperature"], method_args["alpha"]) == (100.0, 100)
    assert method_args["module_regex"] == r"model\.layers\.7"
