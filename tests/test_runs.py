"""``Runs``: the host runs of a work folder, on a fake host."""

import json

import pytest

from asu_plugin.workflows.run.entry import WorkflowError
from asu_plugin.workflows.run.runs import Recipe, Runs

from conftest import fake_host


@pytest.mark.parametrize("steps, logging", [({}, 50), ({"logging_steps": 1}, 1)])
def test_train_keeps_the_config_flag_first_and_logs_every_logging_steps(
    tmp_path, steps, logging
):
    start = tmp_path / "start"
    start.mkdir()
    runs = Runs(tmp_path / "out", host=fake_host(tmp_path / "host"))
    flag = "--config-name=unlearn.yaml"
    model = runs.train("point", start, [flag], Recipe(1, 1e-4, 2), **steps)
    overrides = json.loads((model / "overrides.json").read_text())
    assert overrides[0] == flag  # the host's argparse reads flags before overrides
    logged = [o for o in overrides if o.startswith("trainer.args.logging_steps=")]
    assert logged == [f"trainer.args.logging_steps={logging}"]


def test_a_workflow_folder_is_reused_and_a_failure_names_its_nested_log(tmp_path):
    runs = Runs(tmp_path / "out", host=fake_host(tmp_path / "host"))
    done = runs.out / "classifiers" / "done"
    done.mkdir(parents=True)
    assert runs.workflow("owner_classifier", "classifiers/done", []) == done
    with pytest.raises(WorkflowError, match="classifiers/bad.log"):
        runs.workflow("owner_classifier", "classifiers/bad", ["epochs=0"])
    log = (runs.out / "logs" / "classifiers" / "bad.log").read_text()
    assert "epochs" in log
    assert not (runs.out / "classifiers" / "bad").exists()
