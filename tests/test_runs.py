"""``Runs``: the host runs of a work folder, on a fake host."""

import json

import pytest

from asu_plugin.workflows.runs import Recipe, Runs

from conftest import fake_host


@pytest.mark.parametrize(
    "caller, logging",
    [([], "trainer.args.logging_steps=50"), (["trainer.args.logging_steps=1"], None)],
)
def test_train_keeps_the_config_flag_first_and_a_callers_logging_steps(
    tmp_path, caller, logging
):
    start = tmp_path / "start"
    start.mkdir()
    runs = Runs(tmp_path / "out", host=fake_host(tmp_path / "host"))
    flag = "--config-name=unlearn.yaml"
    model = runs.train("point", start, [flag, *caller], Recipe(1, 1e-4, 2))
    overrides = json.loads((model / "overrides.json").read_text())
    assert overrides[0] == flag  # the host's argparse reads flags before overrides
    steps = [o for o in overrides if o.startswith("trainer.args.logging_steps=")]
    assert steps == [logging or caller[0]]
