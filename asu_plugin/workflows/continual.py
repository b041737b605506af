"""Continual unlearning: forget requests applied one after another through open-unlearning.

Step k unlearns request k from step k-1's model with the host's ``src/train.py`` (so ASU's
teacher is re-taken from that model), then scores it with ``src/eval.py``. A finished step
leaves ``step<k>/step.json``, recording all that defines it; a rerun skips finished steps,
redoes an unfinished one and refuses a step finished under another configuration.
Each host run's output goes to ``logs/step<k>.log`` / ``logs/eval_step<k>.log``.
After every step ``results.md`` and ``results.png`` cover all steps so far.

``python -m asu_plugin.workflows.continual model_path=... task_name=... [method=ASU_KL] ...``
(config: ``configs/continual/default.yaml``).
"""

import json
import shutil
from pathlib import Path

from omegaconf import OmegaConf

from asu_plugin.workflows.run.entry import BadSettings, checked, workflow
from asu_plugin.workflows.run.host import describe_device, host_commit, resolve_device
from asu_plugin.workflows.run.runs import Runs, same_record, scores, write_record
from asu_plugin.workflows.run.tables import markdown_table

PLOTTED = (  # drawn when present; the table holds these and the evaluator's summary
    "forget_Q_A_Prob",
    "forget_Q_A_ROUGE",
    "forget_truth_ratio",
    "retain_Q_A_Prob",
    "retain_Q_A_ROUGE",
    "model_utility",
)


def check_requests(requests):
    """``BadSettings`` naming each request that lacks a split."""
    problems = {}
    for k, request in enumerate(requests, 1):
        missing = {"forget_split", "retain_split"} - set(request)
        if missing:
            problems[f"requests[{k - 1}]"] = (
                f"request {k} ({dict(request)}) lacks {sorted(missing)}: each request "
                "needs forget_split and retain_split (eval_forget_split is optional)"
            )
    if problems:
        raise BadSettings(problems)


def check_config(cfg):
    """``BadSettings`` naming every bad setting."""
    problems = checked(
        {
            "device": lambda: resolve_device(cfg.device),
            "requests": lambda: check_requests(
                OmegaConf.to_container(cfg.requests, resolve=True)
            ),
        }
    )[1]
    if problems:
        raise BadSettings(problems)


def unlearn_overrides(cfg, request):
    return [
        "--config-name=unlearn.yaml",
        f"experiment={cfg.unlearn_experiment}",
        f"trainer={cfg.method}",
        f"forget_split={request['forget_split']}",
        f"retain_split={request['retain_split']}",
    ]


def eval_forget_split(request):
    return request.get("eval_forget_split") or request["forget_split"]


def step_dir(out_dir, k):
    return Path(out_dir) / f"step{k}"


def step_record(cfg, k, request, start_model, host_version, device):
    """All that defines step ``k`` (and where its model goes), as ``step.json`` keeps it."""
    return {
        "step": k,
        "request": request,
        "start_model": start_model,
        "model": str(step_dir(cfg.out_dir, k) / "model"),
        "method": cfg.method,
        "model_config": cfg.model_config,
        "unlearn_experiment": cfg.unlearn_experiment,
        "eval_experiment": cfg.eval_experiment,
        "train_overrides": OmegaConf.to_container(cfg.train_overrides, resolve=True),
        "eval_overrides": OmegaConf.to_container(cfg.eval_overrides, resolve=True),
        "host": host_version,
        "device": device,
    }


def finished_steps(out_dir):
    """The finished steps in ``out_dir`` in order: each one's record and scores."""
    steps = []
    while (step_dir(out_dir, len(steps) + 1) / "step.json").is_file():
        steps.append(_scored(step_dir(out_dir, len(steps) + 1)))
    return steps


def _scored(folder):
    record = json.loads((folder / "step.json").read_text())
    return {**record, **scores(folder / "eval")}


def run_steps(cfg, runs, host_version=""):
    """Applies ``cfg.requests`` in order through ``runs`` (``Runs``); returns the steps.

    ``host_version`` (``host_commit``) is recorded with each step: a finished step is
    reused only under the same host.
    """
    requests = OmegaConf.to_container(cfg.requests, resolve=True)
    check_requests(requests)
    out = Path(cfg.out_dir)
    model = str(cfg.model_path)
    steps = []
    for k, request in enumerate(requests, 1):
        folder = step_dir(out, k)
        record = step_record(cfg, k, request, model, host_version, runs.device)
        if same_record(folder / "step.json", record, "use another out_dir"):
            print(f"step {k}: done before, skipped", flush=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)  # an interrupted attempt
            print(f"step {k}: unlearning {request['forget_split']}", flush=True)
            name = f"step{k}"
            train = unlearn_overrides(cfg, request)
            runs.train(
                name, model, train, extra=cfg.train_overrides, to=record["model"]
            )
            print(f"step {k}: evaluating", flush=True)
            runs.evaluate(
                name,
                record["model"],
                extra=[
                    f"forget_split={eval_forget_split(request)}",
                    *cfg.eval_overrides,
                ],
                experiment=cfg.eval_experiment,
                to=folder / "eval",
            )
            # the step counts as done only once its record exists
            write_record(folder / "step.json", record)
        steps.append(_scored(folder))
        model = record["model"]
        write_results(out, cfg.task_name, steps)
    return steps


def write_results(out, title, steps):
    """``results.md`` (summary and PLOTTED metrics per step) and ``results.png`` (PLOTTED)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = sorted(
        {m for s in steps for m in s["metrics"] if m in s["summary"] or m in PLOTTED}
    )
    rows = [
        [
            s["step"],
            s["request"]["forget_split"],
            *(s["metrics"].get(m) for m in metrics),
        ]
        for s in steps
    ]
    table = markdown_table(["step", "forget request", *metrics], rows)
    (out / "results.md").write_text(f"# Continual unlearning: {title}\n\n{table}\n")

    fig, ax = plt.subplots(figsize=(7, 4))
    for metric in (m for m in PLOTTED if m in metrics):
        ax.plot(
            [s["step"] for s in steps],
            [s["metrics"].get(metric, float("nan")) for s in steps],
            marker="o",
            label=metric,
        )
    ax.set(xlabel="forget request (step)", ylabel="metric", title=title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=120)
    plt.close(fig)


EXAMPLE = (
    "python -m asu_plugin.workflows.continual task_name=tofu_stream "
    "model_path=open-unlearning/tofu_Llama-3.2-1B-Instruct_full method=ASU_KL"
)


@workflow("continual", check_config, EXAMPLE)
def main(cfg):
    runs = Runs(
        cfg.out_dir, cfg.host_dir, cfg.device, cfg.model_config, work_dir=cfg.work_dir
    )
    print(f"continual: {describe_device(runs.device)}", flush=True)
    cfg.out_dir = str(runs.out)
    run_steps(cfg, runs, host_commit(runs.host))
    print(f"results: {runs.out / 'results.md'}, {runs.out / 'results.png'}")


if __name__ == "__main__":
    main()
