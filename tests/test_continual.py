"""The continual-unlearning driver: chaining, records, resume, bad requests (host faked)."""

import json
import os
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import asu_plugin
from asu_plugin.workflows import continual
from asu_plugin.workflows.run.host import hydra_list
from asu_plugin.workflows.run.runs import Runs

CONFIGS = str(Path(asu_plugin.__file__).parent / "configs" / "continual")

REQUESTS = [
    {"forget_split": f"request{k}", "retain_split": "retain_stream"} for k in (1, 2, 3)
]
HOST = "abc1234 a fake host commit"


def config(tmp_path, requests=REQUESTS, **overrides):
    with initialize_config_dir(CONFIGS, version_base=None):
        cfg = compose(
            "default",
            [
                "task_name=tiny",
                "model_path=start",
                f"out_dir={tmp_path}",
                f"requests={hydra_list(requests)}",
                *(f"{k}={v}" for k, v in overrides.items()),
            ],
        )
    return cfg


def value(overrides, key):
    return next(o.split("=", 1)[1] for o in overrides if o.startswith(key + "="))


class FakeHost:
    """``Runs.run`` faked: records calls; 'trains' by writing the start model's name,
    'evaluates' by step."""

    def __init__(self, fail_at=None):
        self.calls, self.fail_at = [], fail_at

    def __call__(self, script, name, overrides):
        out = Path(value(overrides, "paths.output_dir"))
        out.mkdir(parents=True)
        self.calls.append((script, name))
        if script == "train.py":
            if value(overrides, "forget_split") == self.fail_at:
                raise RuntimeError("killed mid-step")
            start = value(overrides, "model.model_args.pretrained_model_name_or_path")
            (out / "start").write_text(start)
        else:
            step = len([c for c in self.calls if c[0] == "eval.py"])
            summary = {"forget_Q_A_Prob": 1 / step, "model_utility": 0.5}
            (out / "TOFU_SUMMARY.json").write_text(json.dumps(summary))
            logs = {  # model_utility's parts: one plotted, one only kept in the record
                "retain_Q_A_Prob": {"agg_value": 0.9, "value_by_index": {}},
                "wf_Q_A_Prob": {"agg_value": 0.1},
            }
            (out / "TOFU_EVAL.json").write_text(json.dumps(logs))


def run_steps(cfg, fake, host_version=HOST):
    """``continual.run_steps`` with host runs faked by ``fake``."""
    checkout = Path(cfg.out_dir).parent / "host"
    (checkout / "src").mkdir(parents=True, exist_ok=True)
    (checkout / "src" / "train.py").touch()
    runs = Runs(cfg.out_dir, checkout, "cpu", cfg.model_config)
    runs.run = fake
    return continual.run_steps(cfg, runs, host_version)


def finished_steps(out_dir):
    return continual.finished_steps(out_dir)


def test_each_step_starts_from_the_previous_model_and_is_scored(tmp_path):
    host = FakeHost()
    steps = run_steps(config(tmp_path), host, HOST)

    assert [s["start_model"] for s in steps] == [
        "start",
        str(tmp_path / "step1" / "model"),
        str(tmp_path / "step2" / "model"),
    ]
    for s in steps:
        assert Path(s["model"], "start").read_text() == s["start_model"]
    assert [s["metrics"]["forget_Q_A_Prob"] for s in steps] == [1, 0.5, 1 / 3]
    assert [c[0] for c in host.calls] == ["train.py", "eval.py"] * 3
    table = (tmp_path / "results.md").read_text().splitlines()
    assert steps[0]["metrics"]["wf_Q_A_Prob"] == 0.1
    assert table[2] == (
        "| step | forget request | forget_Q_A_Prob | model_utility | retain_Q_A_Prob |"
    )
    assert table[-1] == "| 3 | request3 | 0.333 | 0.500 | 0.900 |"
    assert (tmp_path / "results.png").stat().st_size > 0
    assert finished_steps(tmp_path) == steps
    assert {s["host"] for s in steps} == {HOST}


def test_a_stopped_sequence_resumes_at_the_unfinished_step(tmp_path):
    crashed = FakeHost(fail_at="request2")
    with pytest.raises(RuntimeError, match="killed"):
        run_steps(config(tmp_path), crashed, HOST)
    assert (tmp_path / "step1" / "step.json").is_file()
    assert not (tmp_path / "step2" / "step.json").exists()

    resumed = FakeHost()
    steps = run_steps(config(tmp_path), resumed, HOST)
    assert [c[1] for c in resumed.calls] == [
        "step2",
        "eval_step2",
        "step3",
        "eval_step3",
    ]
    assert steps[1]["start_model"] == str(tmp_path / "step1" / "model")
    assert len(steps) == 3

    again = FakeHost()
    assert run_steps(config(tmp_path), again, HOST) == steps and again.calls == []


FORGET05 = [{"forget_split": "forget05", "retain_split": "retain95"}]


@pytest.mark.parametrize(
    "change, field, old, new",
    [
        ({"requests": FORGET05},
         "request", "'forget_split': 'request1'", "'forget_split': 'forget05'"),
        ({"method": "GradDiff"}, "method", "'ASU_KL'", "'GradDiff'"),
        ({"train_overrides": hydra_list(["trainer.method_args.temperature=6"])},
         "train_overrides", "[]", "['trainer.method_args.temperature=6']"),
        ({"eval_overrides": hydra_list(["holdout_split=holdout10"])},
         "eval_overrides", "[]", "['holdout_split=holdout10']"),
        ({"model_config": "phi-1_5"},
         "model_config", "'Llama-3.2-1B-Instruct'", "'phi-1_5'"),
        ({"host": "def5678 another host"}, "host", repr(HOST), "'def5678 another host'"),
    ],
)  # fmt: skip
def test_a_step_finished_under_another_configuration_is_refused(
    tmp_path, change, field, old, new
):
    run_steps(config(tmp_path, REQUESTS[:1]), FakeHost(), HOST)
    overrides = {k: v for k, v in change.items() if k not in ("host", "requests")}
    cfg = config(tmp_path, change.get("requests", REQUESTS[:1]), **overrides)
    host = change.get("host", HOST)
    refused = FakeHost()
    with pytest.raises(ValueError) as error:
        run_steps(cfg, refused, host)
    message = str(error.value)
    assert f"step1{os.sep}step.json belongs to another configuration" in message
    named = rf"\({field}: [^;]*{re.escape(old)}[^;]* recorded, [^;]*{re.escape(new)}[^;]* now\)"
    assert re.search(named, message), message  # the one field that differs, old and new
    assert message.endswith("; use another out_dir")
    assert refused.calls == []


def test_a_request_without_a_retain_split_fails_before_any_step(tmp_path):
    host = FakeHost()
    bad = [*REQUESTS[:2], {"forget_split": "request3"}]
    with pytest.raises(ValueError, match=r"request 3 .* lacks \['retain_split'\]"):
        run_steps(config(tmp_path, bad), host)
    assert host.calls == []


def test_default_config_streams_tofus_splits_with_asu_kl(tmp_path):
    with initialize_config_dir(CONFIGS, version_base=None):
        cfg = compose("default", ["task_name=t", "model_path=m"])
    assert cfg.method == "ASU_KL" and cfg.out_dir == "saves/continual/t"
    assert [r.forget_split for r in cfg.requests] == [
        "forget01",
        "forget05",
        "forget10",
    ]


@pytest.mark.host
def test_two_requests_through_the_real_host(host, tmp_path):
    import subprocess
    import sys

    from asu_plugin.workflows.builders.authors import generate
    from asu_plugin.workflows.builders.tiny import build_tiny_llama, qa_texts
    from asu_plugin.workflows.builders.tofu_format import read_jsonl
    from asu_plugin.workflows.run.host import link_tofu

    generate(tmp_path / "data")
    link_tofu(tmp_path, tmp_path / "data")
    tiny = build_tiny_llama(
        tmp_path / "tiny", qa_texts(read_jsonl(tmp_path / "data" / "finetune.jsonl"))
    )
    tokenizer = f"model.tokenizer_args.pretrained_model_name_or_path={tiny}"
    train = [tokenizer, "+trainer.args.max_steps=2"]
    evals = [tokenizer, "holdout_split=holdout10"]
    evals += [f"~eval.tofu.metrics.{m}" for m in ("privleak", "extraction_strength")]
    requests = [
        {"forget_split": f"request{k}", "retain_split": "retain_stream",
         "eval_forget_split": f"forgotten{k}"}
        for k in (1, 2)
    ]  # fmt: skip
    command = [
        sys.executable, "-m", "asu_plugin.workflows.continual", "task_name=tiny",
        f"model_path={tiny}", "model_config=phi-1_5", "method=ASU_GD",
        f"requests={hydra_list(requests)}",
        f"train_overrides={hydra_list(train)}",
        f"eval_overrides={hydra_list(evals)}",
        f"work_dir={tmp_path}", f"out_dir={tmp_path / 'out'}", f"host_dir={host}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    steps = finished_steps(tmp_path / "out")
    assert [s["step"] for s in steps] == [1, 2]
    assert steps[1]["start_model"] == steps[0]["model"]
    assert steps[0]["host"] and steps[0]["train_overrides"] == train
    for step in steps:
        metrics = step["metrics"]
        assert 0 < metrics["forget_Q_A_Prob"] < 1 and 0 < metrics["retain_Q_A_Prob"] < 1
    assert (tmp_path / "out" / "results.png").is_file()
    assert "| 2 | request2 |" in (tmp_path / "out" / "results.md").read_text()
