"""The paper's baselines' and metrics' configs: the release's values, the trainers' own
arguments, one name per metric file (without the host)."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def load(path):
    return yaml.safe_load(path.read_text())


def init_args(cls_name):
    """``__init__`` arguments of baseline ``cls_name`` and its bases (no host import)."""
    names = set()
    base = ROOT / "asu_plugin" / "core" / "trainer.py"
    for path in [*(ROOT / "asu_plugin" / "baselines").glob("*.py"), base]:
        for cls in ast.parse(path.read_text()).body:
            if isinstance(cls, ast.ClassDef) and cls.name in (
                cls_name,
                *BASES[cls_name],
            ):
                for node in cls.body:
                    if isinstance(node, ast.FunctionDef) and node.name == "__init__":
                        names |= {a.arg for a in node.args.args[1:]}
    return names


BASES = {
    "ME_GD": ("PaperBaseline", "Unlearner"),
    "IDK_GD": ("PaperBaseline", "Unlearner"),
    "IDK_AP": ("IDK_GD", "PaperBaseline", "Unlearner"),
}


@pytest.mark.parametrize(
    "name, method_args",
    [
        (
            "ME_GD",
            {
                "gamma": 0.1,
                "alpha": 1.0,
                "retain_loss_type": "NLL",
                "include_question": True,
                "logits_chunk_size": 256,
            },
        ),
        ("IDK_GD", {"gamma": 1.0, "alpha": 1.0, "retain_loss_type": "NLL"}),
        ("IDK_AP", {"gamma": 1.0, "alpha": 1.0, "beta": 0.1}),
    ],
)
def test_trainer_configs_hold_the_releases_values(name, method_args):
    cfg = load(CONFIGS / "trainer" / f"{name}.yaml")
    assert cfg == {
        "defaults": ["finetune"],
        "handler": name,
        "method_args": method_args,
    }
    assert set(method_args) <= init_args(name)


@pytest.mark.parametrize("family", ["ME", "IDK"])
def test_kl_variants_only_switch_the_retain_term(family):
    cfg = load(CONFIGS / "trainer" / f"{family}_KL.yaml")
    assert cfg == {
        "defaults": [f"{family}_GD"],
        "handler": f"{family}_KL",
        "method_args": {"retain_loss_type": "KL"},
    }


def test_experiments_train_the_baselines_on_their_data():
    me = load(CONFIGS / "experiment" / "unlearn" / "tofu" / "me.yaml")
    assert {"override /trainer": "ME_GD"} in me["defaults"]
    assert me["trainer"]["method_args"]["gamma"] == 0.1
    idk = load(CONFIGS / "experiment" / "unlearn" / "tofu" / "idk_ap.yaml")
    assert {"override /trainer": "IDK_AP"} in idk["defaults"]
    assert {"override /data/datasets@data.forget": "TOFU_QA_forget_idk"} in idk[
        "defaults"
    ]
    assert {"override /data/datasets@data.retain": "TOFU_QA_retain_idk"} in idk[
        "defaults"
    ]
    assert idk["data"]["forget"]["TOFU_QA_forget_idk"]["handler"] == "IdkQADataset"
    for path in ("me.yaml", "idk_ap.yaml"):
        text = (CONFIGS / "experiment" / "unlearn" / "tofu" / path).read_text()
        assert "# @package _global_" in text.splitlines()


def test_each_metric_file_sets_its_own_package():
    for path in (CONFIGS / "eval" / "tofu_metrics").glob("*.yaml"):
        first = path.read_text().splitlines()[0]
        assert first == f"# @package eval.tofu.metrics.{path.stem}", path.name


def test_fe_and_mu_without_nli_have_no_entailment_and_other_names():
    metrics = CONFIGS / "eval" / "tofu_metrics"
    for name in ("forget_efficacy_no_nli", "paper_model_utility_no_nli"):
        text = (metrics / f"{name}.yaml").read_text()
        assert "entailment" not in text.replace("no_nli", "").split("defaults:")[1]
    assert (
        load(metrics / "forget_efficacy_no_nli.yaml")["handler"]
        == "forget_efficacy_no_nli"
    )
    with_nli = load(CONFIGS / "eval" / "tofu_paper.yaml")
    without = load(CONFIGS / "eval" / "tofu_paper_no_nli.yaml")
    assert "nli_model" in with_nli and "nli_model" not in without
    assert with_nli["nli_model"] == "sileod/deberta-v3-base-tasksource-nli"


def test_mu_has_the_six_parts_on_three_sets():
    defaults = load(CONFIGS / "eval" / "tofu_metrics" / "paper_model_utility.yaml")[
        "defaults"
    ]
    assert len(defaults) == 18
    names = [next(iter(d.values())) for d in defaults]
    for split in ("retain", "ra", "wf"):
        parts = [n for n in names if n.startswith(f"{split}_")]
        assert len(parts) == 6, parts
