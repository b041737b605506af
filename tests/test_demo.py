"""The demo's input checks and folders, on a fake host that copies models and writes scores."""

import json
from pathlib import Path

import pytest

from asu_plugin.workflows.demo import Knobs, main, run_demo
from asu_plugin.workflows.runs import RecordMismatch, Runs
from asu_plugin.workflows.targets import TINY_LLAMA, Setup, prepare

from conftest import fake_host


def overrides(folder):
    return json.loads((folder / "overrides.json").read_text())


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--temperature", "0", "attention temperature must be a finite number > 0"),
        ("--temperature", "nan", "attention temperature must be a finite number > 0"),
        (
            "--gamma",
            "-1",
            "gamma, a loss term's weight, must be a finite number >= 0",
        ),
        ("--epochs", "0", "epochs must be an integer >= 1, got 0"),
        ("--epochs", "1.5", "invalid literal for int() with base 10: '1.5'"),
    ],
)
def test_bad_knobs_stop_before_anything_is_written(
    tmp_path, capsys, flag, value, message
):
    out = tmp_path / "demo"
    with pytest.raises(SystemExit) as stop:
        main(["--out", str(out), flag, value])
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert f"argument {flag}: {message}" in error
    assert not out.exists()


def test_folders_are_named_by_what_defines_them(tmp_path, capsys):
    runs = Runs(tmp_path / "demo", host=fake_host(tmp_path / "host"))
    run_demo(runs, Knobs(32.0, 1.0, 30))
    first = capsys.readouterr().out
    run_demo(runs, Knobs(6.0, 1.0, 2))
    second = capsys.readouterr().out

    out = runs.out
    trained = sorted(p.name for p in out.iterdir() if (p / "overrides.json").is_file())
    evaluated = sorted(p.name for p in (out / "evals").iterdir())
    assert trained == ["asu_kl_t32_g1_e30", "asu_kl_t6_g1_e2", "retain", "target"]
    assert evaluated == [
        "after_t32_g1_e30",
        "after_t6_g1_e2",
        "before",
        "retain",
        "teacher_t32",
        "teacher_t6",
    ]
    unlearned = overrides(out / "asu_kl_t6_g1_e2")
    assert "trainer.method_args.temperature=6.0" in unlearned
    assert "trainer.args.num_train_epochs=2" in unlearned
    after = overrides(out / "evals" / "after_t6_g1_e2")
    assert (
        f"model.model_args.pretrained_model_name_or_path={out / 'asu_kl_t6_g1_e2'}"
        in after
    )
    # the second run reuses the target and retain models and their scores, nothing else
    assert "finetuning the target model" in first and "finetuning" not in second
    assert "| forget answer prob | 1.000 | 1.000 | 0.167 |" in second
    assert sorted(p.name for p in (out / "logs").iterdir()) == sorted(
        [f"{name}.log" for name in trained] + [f"eval_{name}.log" for name in evaluated]
    )


def test_a_folder_of_another_setup_is_refused(tmp_path):
    runs = Runs(tmp_path / "demo", host=fake_host(tmp_path / "host"))
    prepare(runs, names=["target"])
    deeper = Setup(model={**TINY_LLAMA, "num_layers": 2})
    with pytest.raises(RecordMismatch) as error:
        prepare(runs, deeper, names=["target"])
    assert "setup.json belongs to another configuration (model: " in str(error.value)
    assert "'num_layers': 4} recorded, " in str(error.value)


def test_a_failed_host_run_stops_the_demo_naming_its_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPEN_UNLEARNING_DIR", str(fake_host(tmp_path / "host", True)))
    with pytest.raises(SystemExit) as stop:
        main(["--out", str(tmp_path / "demo")])
    log = Path(tmp_path / "demo" / "logs" / "target.log").resolve()
    assert str(stop.value.code) == (
        "demo stopped: open-unlearning src/train.py failed for target (exit 1); "
        f"its log: {log}"
    )
    assert "fake failure" in log.read_text()
