"""The relearning-attack driver: splits, runs, resume, refusals (host faked), one real host run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import asu_plugin
from asu_plugin.workflows.builders.authors import generate
from asu_plugin.workflows.builders.tofu_format import read_jsonl
from asu_plugin.workflows.relearn import (
    check_config,
    run_relearn,
    split_questions,
    write_split_data,
)
from asu_plugin.workflows.run.host import hydra_list
from asu_plugin.workflows.run.runs import RecordMismatch, Runs

from conftest import fake_host

CONFIGS = str(Path(asu_plugin.__file__).parent / "configs" / "relearn")
QUESTIONS = [f"question {i}?" for i in range(40)]


def config(tmp_path, models, **overrides):
    with initialize_config_dir(CONFIGS, version_base=None):
        return compose(
            "default",
            [
                "task_name=tiny",
                f"data_dir={tmp_path / 'source'}",
                "model_config=phi-1_5",
                f"models={{{', '.join(f'{k}: {v}' for k, v in models.items())}}}",
                f"out_dir={tmp_path / 'out'}",
                *(f"{k}={v}" for k, v in overrides.items()),
            ],
        )


def fake_models(tmp_path, **probs):
    """Model folders the fake host scores by their "prob" file."""
    models = {}
    for name, prob in probs.items():
        folder = tmp_path / "models" / name
        folder.mkdir(parents=True)
        (folder / "prob").write_text(str(prob))
        models[name] = folder
    return models


def overrides(folder):
    return json.loads((folder / "overrides.json").read_text())


@pytest.fixture
def setup(tmp_path):
    """Generated TOFU-format data, a fake host, a target / retain / unlearned model."""
    generate(tmp_path / "source")
    models = fake_models(tmp_path, target=0.9, retain=0.1, ASU_KL=0.2)
    return models, fake_host(tmp_path / "host")


def run(tmp_path, host, cfg):
    runs = Runs(cfg.out_dir, host=host, model=cfg.model_config)
    data = write_split_data(
        cfg.data_dir, runs.out / "data", cfg.forget_split, cfg.relearn_fraction
    )
    return run_relearn(cfg, runs, data)


def test_the_split_is_disjoint_deterministic_and_order_free():
    relearn, heldout = split_questions(QUESTIONS, 0.25, seed=0)
    assert len(relearn) == 10 and len(heldout) == 30
    assert relearn | heldout == set(QUESTIONS) and not relearn & heldout
    assert split_questions(QUESTIONS[::-1] + QUESTIONS[:3], 0.25) == (relearn, heldout)
    assert split_questions(QUESTIONS, 0.25, seed=1) != (relearn, heldout)
    assert relearn != set(QUESTIONS[:10])  # not the file's first rows


@pytest.mark.parametrize("fraction", [0, 1, 0.01, -0.5])
def test_a_fraction_leaving_a_part_empty_is_refused(fraction):
    with pytest.raises(ValueError, match=f"non-empty .* got {fraction}"):
        split_questions(QUESTIONS, fraction)


def test_split_data_keeps_every_file_and_adds_the_parts(tmp_path):
    generate(tmp_path / "source")
    data = write_split_data(tmp_path / "source", tmp_path / "data", "forget10", 0.5)
    forget = read_jsonl(tmp_path / "source" / "forget10.jsonl")
    part = {
        name: read_jsonl(tmp_path / "data" / f"forget10_{name}.jsonl")
        for name in ("relearn", "heldout", "heldout_perturbed")
    }
    assert data["questions"] == {
        "forget10_relearn": 7,
        "forget10_heldout": 7,
        "forget10_heldout_perturbed": 7,
    }
    assert sorted(map(str, part["relearn"] + part["heldout"])) == sorted(
        map(str, forget)
    )
    held = [r["question"] for r in part["heldout"]]
    assert [r["question"] for r in part["heldout_perturbed"]] == held
    assert "perturbed_answer" in part["heldout_perturbed"][0]
    readme = (tmp_path / "data" / "README.md").read_text()
    assert "config_name: forget10_heldout_perturbed" in readme
    assert "config_name: retain90" in readme


def test_data_without_the_perturbed_file_is_refused(tmp_path):
    generate(tmp_path / "source")
    (tmp_path / "source" / "forget10_perturbed.jsonl").unlink()
    with pytest.raises(ValueError, match=r"lacks \['forget10_perturbed.jsonl'\]"):
        write_split_data(tmp_path / "source", tmp_path / "data", "forget10", 0.5)
    assert not (tmp_path / "data").exists()


def test_every_model_is_relearned_and_scored_on_the_held_out_part(tmp_path, setup):
    models, host = setup
    cfg = config(tmp_path, models, steps="[0,5,20]", retain_model="retain")
    rows = run(tmp_path, host, cfg)

    out = Path(cfg.out_dir)
    # the retain model's untouched scores come first: forget_quality's reference
    assert [(r["model"], r["steps"]) for r in rows] == [
        ("retain", 0), ("target", 0), ("target", 5), ("target", 20),
        ("retain", 5), ("retain", 20), ("ASU_KL", 0), ("ASU_KL", 5), ("ASU_KL", 20),
    ]  # fmt: skip
    scored = {(r["model"], r["steps"]): r["forget_Q_A_Prob"] for r in rows}
    assert scored[("ASU_KL", 0)] == pytest.approx(0.2)
    assert scored[("ASU_KL", 20)] == pytest.approx(0.4)  # fake: prob + steps / 100

    train = overrides(out / "evals" / "ASU_KL_steps5")
    relearned = f"{out / 'ASU_KL_steps5'}"
    assert f"model.model_args.pretrained_model_name_or_path={relearned}" in train
    evaluated = overrides(out / "evals" / "ASU_KL_steps0")
    assert (
        f"model.model_args.pretrained_model_name_or_path={models['ASU_KL']}"
        in evaluated
    )
    assert "forget_split=forget10_heldout" in evaluated
    assert "~eval.tofu.metrics.model_utility" in evaluated
    assert "~eval.tofu.metrics.forget_quality" not in evaluated
    retain_logs = out / "evals" / "retain_steps0" / "TOFU_EVAL.json"
    assert f"retain_logs_path={retain_logs}" in evaluated
    assert "retain_logs_path=null" in overrides(out / "evals" / "retain_steps0")
    # relearned models are gone once scored; each host run has its log
    assert not (out / "ASU_KL_steps5").exists()
    assert (out / "logs" / "ASU_KL_steps5.log").is_file()
    md = (out / "results.md").read_text()
    assert (
        "Finetuned on 7 questions of forget10" in md and "scored on the other 7" in md
    )
    assert "| ASU_KL | 20 | 0.400 |" in md
    assert (out / "results.png").is_file()


def test_relearning_trains_on_the_relearn_part_at_a_constant_rate(tmp_path, setup):
    models, host = setup
    models = {"target": models["target"]}
    cfg = config(tmp_path, models, steps="[3]", learning_rate=2e-4, keep_models=True)
    run(tmp_path, host, cfg)
    train = overrides(Path(cfg.out_dir) / "target_steps3")
    for expected in (
        "experiment=finetune/tofu/default",
        "data.train.TOFU_QA_full.args.hf_args.name=forget10_relearn",
        "++trainer.args.lr_scheduler_type=constant",
        "++trainer.args.max_steps=3",
        "trainer.args.learning_rate=0.0002",
        "trainer.args.per_device_train_batch_size=8",
    ):
        assert expected in train
    evaluated = overrides(Path(cfg.out_dir) / "evals" / "target_steps3")
    assert (
        "~eval.tofu.metrics.forget_quality" in evaluated
    )  # no retain model: no reference


def test_a_stopped_run_resumes_without_redoing_finished_points(tmp_path, setup):
    models, host = setup
    cfg = config(tmp_path, models, steps="[0,5]")
    out = Path(cfg.out_dir)
    run(tmp_path, host, cfg)
    (
        out / "evals" / "ASU_KL_steps5" / "relearn.json"
    ).unlink()  # killed before its record
    before = {p: p.stat().st_mtime_ns for p in (out / "evals").glob("*/TOFU_EVAL.json")}
    rows = run(tmp_path, host, cfg)
    after = {p: p.stat().st_mtime_ns for p in (out / "evals").glob("*/TOFU_EVAL.json")}
    redone = [p.parent.name for p in after if before.get(p) != after[p]]
    assert redone == ["ASU_KL_steps5"] and len(rows) == 6


@pytest.mark.parametrize(
    "change, field",
    [
        ({"learning_rate": 1e-4}, "learning_rate: 1e-05 recorded, 0.0001 now"),
        ({"relearn_fraction": 0.25}, "relearn_fraction: 0.5 recorded, 0.25 now"),
        (
            {"train_overrides": hydra_list(["trainer.args.weight_decay=0"])},
            "train_overrides: [] recorded, ['trainer.args.weight_decay=0'] now",
        ),
    ],
)
def test_a_folder_of_another_configuration_is_refused(tmp_path, setup, change, field):
    models, host = setup
    run(tmp_path, host, config(tmp_path, models, steps="[0]"))
    with pytest.raises(RecordMismatch, match="setup.json belongs to another") as error:
        run(tmp_path, host, config(tmp_path, models, steps="[0]", **change))
    assert field in str(error.value)


def test_another_model_under_a_finished_name_is_refused(tmp_path, setup):
    models, host = setup
    run(tmp_path, host, config(tmp_path, models, steps="[0]"))
    moved = {**models, "ASU_KL": fake_models(tmp_path / "other", ASU_KL=0.3)["ASU_KL"]}
    with pytest.raises(RecordMismatch, match="ASU_KL_steps0/relearn.json belongs"):
        run(tmp_path, host, config(tmp_path, moved, steps="[0]"))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"steps": "[0,-5]"}, "steps must be a list of integers >= 0, got [0, -5]"),
        ({"steps": "[2.5]"}, "steps must be a list of integers >= 0, got [2.5]"),
        ({"retain_model": "base"}, "retain_model 'base' is not in models"),
        ({"learning_rate": 0}, "learning_rate must be a finite number > 0, got 0"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ],
)
def test_bad_settings_are_refused_naming_the_value(tmp_path, change, message):
    cfg = config(tmp_path, {"target": tmp_path}, **change)
    with pytest.raises(ValueError) as error:
        check_config(cfg)
    assert message in str(error.value)


def test_a_bad_model_name_stops_the_command_before_anything_runs(tmp_path):
    command = [
        sys.executable, "-m", "asu_plugin.workflows.relearn", "task_name=x",
        f"data_dir={tmp_path}", "models={_x: y}", f"out_dir={tmp_path / 'out'}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2
    assert "models: model name '_x' must be letters" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.host
def test_relearning_through_the_real_host(host, tmp_path):
    from asu_plugin.workflows.builders.tiny import build_tiny_llama, qa_texts

    generate(tmp_path / "source")
    tiny = build_tiny_llama(
        tmp_path / "tiny", qa_texts(read_jsonl(tmp_path / "source" / "finetune.jsonl"))
    )
    evals = ["eval.tofu.metrics.forget_Q_A_ROUGE.generation_args.max_new_tokens=8"]
    command = [
        sys.executable, "-m", "asu_plugin.workflows.relearn", "task_name=tiny",
        f"data_dir={tmp_path / 'source'}", "model_config=phi-1_5",
        f"models={{target: {tiny}, retain: {tiny}}}", "retain_model=retain",
        "steps=[0,2]", "learning_rate=1e-2", "batch_size=4",
        f"eval_overrides={hydra_list(evals)}",
        f"out_dir={tmp_path / 'out'}", f"host_dir={host}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    out = tmp_path / "out"
    scored = {
        p.parent.name: json.loads(p.read_text())
        for p in (out / "evals").glob("*/TOFU_EVAL.json")
    }
    assert sorted(scored) == [
        f"{m}_steps{s}" for m in ("retain", "target") for s in (0, 2)
    ]
    for logs in scored.values():
        assert len(logs["forget_Q_A_Prob"]["value_by_index"]) == 7  # the held-out part
        assert "model_utility" not in logs and "privleak" not in logs
    # the same model: identical before relearning, and 2 steps at 1e-2 move it
    before, after = (scored[f"target_steps{s}"]["forget_Q_A_Prob"] for s in (0, 2))
    assert before == scored["retain_steps0"]["forget_Q_A_Prob"]
    assert after["agg_value"] != before["agg_value"]
    assert scored["target_steps2"]["forget_quality"]["agg_value"] is not None
    assert not (out / "target_steps2").exists()
    results = (out / "results.md").read_text()
    assert "| target | 2 |" in results
    assert "Command: `python -m asu_plugin.workflows.relearn task_name=tiny " in results
