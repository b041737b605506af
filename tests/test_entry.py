"""Every workflow names all of its missing or bad settings in a few lines and exits 2."""

import subprocess
import sys

import pytest


def run(workflow, *args, cwd):
    command = [sys.executable, "-m", f"asu_plugin.workflows.{workflow}", *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    lines = result.stderr.splitlines()
    # ours start with the workflow's name: what a dependency printed on import comes before
    start = next((i for i, line in enumerate(lines) if line.startswith(workflow)), 0)
    return result.returncode, lines[start:]


@pytest.mark.parametrize(
    "workflow, args, named",
    [
        ("relearn", [], ["task_name", "data_dir", "models"]),
        ("relearn", ["steps=[-1]", "batch_size=0"],
         ["task_name", "data_dir", "models", "steps", "batch_size"]),
        ("continual", [], ["task_name", "model_path"]),
        ("continual", ["task_name=t", "requests=[{forget_split: f1}]"],
         ["model_path", "requests[0]"]),
        ("calibrate", [], ["model", "data_dir"]),
        ("calibrate", ["model=nowhere", "temperatures=[0]"],
         ["model", "data_dir", "temperatures"]),
        ("demo", ["temperature=0", "epochs=x", "baseline=IDK"],
         ["temperature", "epochs", "baseline"]),
    ],
)  # fmt: skip
def test_missing_and_bad_settings_are_all_named_with_an_example(
    tmp_path, workflow, args, named
):
    code, lines = run(workflow, *args, cwd=tmp_path)
    assert code == 2, lines
    count = len(named)
    assert lines[0] == (
        f"{workflow}: {count} setting{'s' * (count > 1)} missing or bad, nothing ran:"
    )
    assert sorted(
        line.split(":")[0].strip() for line in lines[1 : count + 1]
    ) == sorted(named)
    assert lines[count + 1] == "For example:"
    assert lines[count + 2].startswith(f"  python -m asu_plugin.workflows.{workflow} ")
    assert len(lines) == count + 4  # and the config file's path: no traceback
    assert list(tmp_path.iterdir()) == []  # nothing ran, not even Hydra's run folder
