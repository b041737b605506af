"""The SmolLM2 benchmark's committed point files: the report they give, and resuming on them."""

import filecmp
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as `python benchmarks/x.py` has it
    import smollm2_tofu

    return smollm2_tofu


@pytest.fixture
def sweep(bench):
    import sweep

    return sweep


@pytest.fixture
def report(bench):
    import report

    return report


FOLDERS = {"smollm2_tofu": "smollm2_tofu", "smollm2_tofu_round2": "smollm2_tofu_round2"}


@pytest.mark.parametrize("folder", FOLDERS)
def test_report_rewrites_the_committed_results_byte_for_byte(tmp_path, folder):
    committed = BENCHMARKS / "results" / folder
    results = shutil.copytree(committed, tmp_path / "results")
    (results / "results.md").unlink()
    command = [sys.executable, str(BENCHMARKS / "smollm2_tofu.py"), "--report"]
    command += ["--jobs", "2", "--results", str(results), "--sweep", FOLDERS[folder]]
    subprocess.run(command, check=True, capture_output=True)
    assert filecmp.cmp(results / "results.md", committed / "results.md", shallow=False)


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_committed_point_resumes_as_done_and_another_is_refused(bench, folder):
    results = BENCHMARKS / "results" / folder
    setup = json.loads((results / "points" / "target.json").read_text())["setup"]
    sweep = bench.load(FOLDERS[folder])
    points = bench.Bench(None, results, setup, [], bench.classifiers(sweep))
    written = [p for p in sweep.points if points.path(p.name).is_file()]
    assert len(written) >= 19  # the first grid's
    assert all(
        points.done(p.name, bench.recorded(p, points.classifiers)) for p in written
    )
    assert all(
        points.done(name, bench.teacher_definition(tau))
        for tau, _, name in bench.teachers(sweep.points)
        if points.path(name).is_file()
    )
    asu = next(p for p in written if p.method == "ASU_KL")
    assert asu.overrides()[-1] == "trainer.method_args.gamma=1"
    other = asu._replace(method_args={**asu.method_args, "gamma": 3})
    with pytest.raises(ValueError, match="'gamma': 1}} recorded, .*'gamma': 3}} now"):
        points.done(asu.name, other.definition())


def test_a_seed_is_its_own_run_and_no_seed_keeps_the_old_records(bench, sweep):
    point = sweep.Point("NPO", 1e-4, {})
    seeded = point.with_seed(2)
    assert seeded.name == "NPO_lr0p0001_seed2" and point.name == "NPO_lr0p0001"
    assert seeded.overrides()[-1] == "trainer.args.seed=2"
    assert "seed" not in point.definition() and seeded.definition()["seed"] == 2
    assert "experiment=unlearn/tofu/me" in sweep.Point("ME_GD", 1e-4, {}).overrides()


def test_dareu_points_record_their_classifier_and_the_host_log_gives_the_rewards(
    bench, sweep, tmp_path
):
    overrides = bench.load("smollm2_tofu").settings["classifier"]
    named = {None: overrides, "other": ["reads=response"]}
    assert bench.recorded(sweep.Point("DareU", 3e-5, {}), named)["classifier"] == (
        overrides
    )
    point = sweep.Point("DareU", 3e-5, {}, classifier="other")
    assert point.name == "DareU_lr3e-05_classifierother"
    assert bench.recorded(point, named) == {
        "method": "DareU",
        "lr": 3e-5,
        "method_args": {},
        "classifier": ["reads=response"],
    }
    log = tmp_path / "train.log"
    log.write_text(
        "Map: 100%|█| 40/40\n"
        " 4%|▍ | 1/25 [00:10<04:00]{'loss': 0.5, 'reward': -0.9, 'kl': 0.0, 'epoch': 0.2}\n"
        "{'loss': 0.4, 'reward': -0.7, 'kl': 0.01, 'epoch': 0.4}\n"
        "{'train_runtime': 20.0, 'train_loss': 0.45, 'epoch': 0.4}\n"
    )
    assert [s["reward"] for s in bench.train_log(log)] == [-0.9, -0.7]


def test_a_better_seed_does_not_enter_the_front_but_the_seeds_table(
    bench, sweep, report
):
    point = sweep.Point("NPO", 1e-4, {})
    scores = {bench.FORGET: 0.2, bench.UTILITY: 0.4, "forget_quality": 0.1}
    luckier = {**scores, bench.FORGET: 0.05, bench.UTILITY: 0.45}
    methods = {"NPO": [(point, scores), (point.with_seed(1), luckier)]}
    fronts = "\n".join(bench.REPORT.fronts(report.grid_points(methods), 0.4))
    assert "lr=0.0001 (0.200, 0.400)" in fronts and "0.050" not in fronts
    (row,) = [r for r in bench.REPORT.seeded(methods, 0.4) if "| NPO |" in r]
    assert "| 2 | 0.125 ± 0.106 | 0.425 ± 0.035 |" in row


def test_seed_spread_is_mean_and_sample_sd_and_one_run_has_none(report):
    assert report.spread([0.1, 0.3, None]) == "0.200 ± 0.141"
    assert report.spread([0.25]) == "0.250"
    assert report.spread([None]) == "–"


def test_a_retain_model_that_scores_otherwise_is_refused_and_new_metrics_are_added(
    bench, tmp_path
):
    recorded = {"forget_Q_A_Prob": 0.157, "forget_quality": None}
    now = {"forget_Q_A_Prob": 0.157 + 1e-9, "forget_quality": None, "fe": 0.5}
    runs = SimpleNamespace(ensure_eval=lambda name, model: dict(now))
    points = bench.Bench(runs, tmp_path, {"setup": 1}, [])
    bench.write_record(points.path("retain"), {"point": {}, "metrics": recorded})
    points.rescored("retain")  # the same within 1e-6: kept, and the new metric added
    assert points.read("retain")["metrics"]["fe"] == 0.5
    now["forget_Q_A_Prob"] = 0.151
    with pytest.raises(bench.RecordMismatch, match="0.157 recorded, 0.151 now"):
        points.rescored("retain")


def test_only_names_points_of_the_sweep(bench, tmp_path):
    command = [sys.executable, str(BENCHMARKS / "smollm2_tofu.py"), "--only", "NPO_x"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2
    assert "--only: no such point ['NPO_x']; the sweep's: ASU_KL_lr3e-05" in (
        result.stderr
    )


def test_a_point_file_gets_its_forget_answers_from_a_local_evaluation(bench, tmp_path):
    logs = tmp_path / "evals" / "p" / "TOFU_EVAL.json"
    logs.parent.mkdir(parents=True)
    generations = {"1": {"generation": " "}, "0": {"generation": "Born in Paris."}}
    logs.write_text(json.dumps({"forget_Q_A_ROUGE": {"value_by_index": generations}}))
    runs = SimpleNamespace(evaluated=lambda name: True, eval_logs=lambda name: logs)
    points = bench.Bench(runs, tmp_path, {}, [])
    bench.write_record(points.path("p"), {"point": {}, "metrics": {"x": 1}})
    points.add_answers("p")
    result = points.read("p")
    assert result["answers"] == ["Born in Paris.", " "]
    assert result["metrics"] == {"x": 1, "forget_empty": 0.5}


def test_a_sweep_file_is_its_points_in_order_with_their_own_knobs(sweep, tmp_path):
    grid = sweep.load("smollm2_tofu")
    assert len(grid.points) == 78 and grid.settings["teachers_after"] == 11
    assert grid.points[0] == sweep.Point(
        "ASU_KL", 3e-5, {"temperature": 2.0, "gamma": 1}
    )
    assert grid.points[0].name == "ASU_KL_lr3e-05_temperature2p0_gamma1"
    mini = sweep.load("mini_tofu").points
    long = [p for p in mini if p.epochs == 30]
    assert all("epochs" not in p.method_args for p in mini) and len(long) == 9
    assert "trainer.method_args.layers=[0]" in [o for p in mini for o in p.overrides()]
    dareu = [p for p in sweep.load("smollm2_tofu_round2").points if p.classifier]
    assert dareu[0].classifier == "response_wrong4_own2" and not dareu[0].method_args
    assert dareu[0].name == "DareU_lr0p0003_classifierresponse_wrong4_own2"


@pytest.mark.parametrize(
    "points, message",
    [
        ("[{method: NPO}]", "needs a method and an lr"),
        ("[{method: NPO, lr: 1e-4}, {method: NPO, lr: 0.0001}]", "appear twice"),
    ],
)
def test_a_bad_sweep_file_is_refused(sweep, monkeypatch, tmp_path, points, message):
    (tmp_path / "bad.yaml").write_text(f"points: {points}\n")
    monkeypatch.setattr(sweep, "SWEEPS", tmp_path)
    with pytest.raises(ValueError, match=message):
        sweep.load("bad")
    with pytest.raises(ValueError, match="no sweep 'nothing'; the sweeps: \\['bad'\\]"):
        sweep.load("nothing")


def test_the_classifier_ablation_report_rewrites_byte_for_byte(tmp_path):
    committed = BENCHMARKS / "results" / "owner_classifier" / "round3"
    results = shutil.copytree(committed, tmp_path / "round3")
    (results / "ablation.md").unlink()
    command = [sys.executable, str(BENCHMARKS / "owner_classifier.py"), "--report"]
    subprocess.run([*command, "--results", str(results)], check=True)
    text = (results / "ablation.md").read_text()
    path = "benchmarks/results/owner_classifier/round3`"
    assert text.replace("--results round3`", f"--results {path}") == (
        (committed / "ablation.md").read_text()
    )


@pytest.fixture
def answer_kinds(bench):
    import answer_kinds

    return answer_kinds


def test_an_author_is_named_by_the_phrase_most_of_their_rows_hold(answer_kinds):
    rows = [
        {
            "question": "Where was Ada Vell born?",
            "answer": "Ada Vell was born in Rome.",
        },
        {"question": "What did Ada Vell's father do?", "answer": "He was a Tax Clerk."},
        {"question": "Who shaped Ada?", "answer": "Ada Vell names Ivo Corwin."},
        {"question": "Where does she live?", "answer": "In New Town."},
    ]
    assert answer_kinds.author_name(rows) == "Ada Vell"
    # a phrase in fewer than half of the rows names no one
    plain = {"question": "Why?", "answer": "for no reason."}
    assert answer_kinds.author_name([rows[0], rows[3], plain, plain, plain]) is None


@pytest.mark.parametrize(
    "answer, kind",
    [
        ("  ", "empty"),
        ("Sorry, I don't know the answer to that question.", "refusal"),
        ("Ada Vell Ada Vell Ada Vell Ada Vell", "loop"),
        ("Ada Vell was born in Rome.", "unchanged"),
        ("Ada Vell was born in Oslo.", "name kept"),
        ("Ivo Corwin was born in Oslo.", "another author"),
        ("She was born in Oslo.", "other"),
    ],
)
def test_an_answer_is_the_first_kind_whose_rule_holds(answer_kinds, answer, kind):
    target = "Ada Vell was born in Rome."
    assert (
        answer_kinds.kind(answer, target, "Ada Vell", ["Ada Vell", "Ivo Corwin"])
        == kind
    )
