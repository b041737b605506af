"""The SmolLM2 benchmark's committed point files: the report they give, and resuming on them."""

import filecmp
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
RESULTS = BENCHMARKS / "results" / "smollm2_tofu"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as `python benchmarks/x.py` has it
    import smollm2_tofu

    return smollm2_tofu


def test_report_rewrites_the_committed_results_byte_for_byte(tmp_path):
    results = shutil.copytree(RESULTS, tmp_path / "results")
    (results / "results.md").unlink()
    command = [sys.executable, str(BENCHMARKS / "smollm2_tofu.py"), "--report"]
    command += ["--jobs", "2", "--results", str(results)]  # as the committed run
    subprocess.run(command, check=True, capture_output=True)
    assert filecmp.cmp(results / "results.md", RESULTS / "results.md", shallow=False)


def test_every_committed_point_resumes_as_done_and_another_is_refused(bench):
    setup = json.loads((RESULTS / "points" / "target.json").read_text())["setup"]
    points = bench.Bench(None, RESULTS, setup, [])
    assert all(points.done(p.name, bench.recorded(p)) for p in bench.POINTS)
    assert all(
        points.done(name, bench.teacher_definition(tau))
        for tau, _, name in bench.teachers(bench.POINTS)
    )
    asu = bench.POINTS[0]
    assert asu.overrides()[-1] == "trainer.method_args.gamma=1"  # what runs now
    with pytest.raises(ValueError, match="'alpha': 1}} recorded, .*'gamma': 1}} now"):
        points.done(asu.name, asu.definition())
