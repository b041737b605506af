"""Continual unlearning: forget requests applied one after another through open-unlearning.

Step k unlearns request k from step k-1's model with the host's ``src/train.py`` (so ASU's
teacher is re-taken from that model), then scores it with ``src/eval.py``. A finished step
leaves ``step<k>/step.json``; a rerun skips finished steps and redoes an unfinished one.
After every step ``results.md`` and ``results.png`` cover all steps so far.

``python -m asu_plugin.workflows.continual model_path=... task_name=... [method=ASU_KL] ...``
(config: ``configs/continual/default.yaml``).
"""

import json
import shutil
from functools import partial
from pathlib import Path

import hydra
from omegaconf import OmegaConf

from asu_plugin.workflows.host import host_dir, is_host, run_host

PLOTTED = (  # drawn when present; the table holds these and the evaluator's summary
    "forget_Q_A_Prob",
    "forget_Q_A_ROUGE",
    "forget_truth_ratio",
    "retain_Q_A_Prob",
    "retain_Q_A_ROUGE",
    "model_utility",
)


def check_request(k, request):
    missing = {"forget_split", "retain_split"} - set(request)
    if missing:
        raise ValueError(
            f"request {k} ({dict(request)}) lacks {sorted(missing)}: each request needs "
            "forget_split and retain_split (eval_forget_split is optional)"
        )


def train_overrides(cfg, k, request, model, out):
    return [
        "--config-name=unlearn.yaml",
        f"experiment={cfg.unlearn_experiment}",
        f"trainer={cfg.method}",
        f"task_name={cfg.task_name}_step{k}",
        f"model={cfg.model}",
        f"model.model_args.pretrained_model_name_or_path={model}",
        f"forget_split={request['forget_split']}",
        f"retain_split={request['retain_split']}",
        f"paths.output_dir={out}",
        *cfg.train_overrides,
    ]


def eval_overrides(cfg, k, request, model, out):
    forget_split = request.get("eval_forget_split") or request["forget_split"]
    return [
        f"experiment={cfg.eval_experiment}",
        f"task_name={cfg.task_name}_step{k}_eval",
        f"model={cfg.model}",
        f"model.model_args.pretrained_model_name_or_path={model}",
        f"forget_split={forget_split}",
        f"paths.output_dir={out}",
        *cfg.eval_overrides,
    ]


def scores(eval_dir):
    """Every ``agg_value`` of the host's ``*_EVAL.json`` (retain metrics included), and
    the names in its ``*_SUMMARY.json``."""
    metrics, summary = {}, []
    for path in sorted(Path(eval_dir).glob("*_EVAL.json")):
        logs = json.loads(path.read_text())
        metrics.update(
            (name, log["agg_value"])
            for name, log in logs.items()
            if isinstance(log, dict) and "agg_value" in log
        )
    for path in sorted(Path(eval_dir).glob("*_SUMMARY.json")):
        names = json.loads(path.read_text())
        metrics.update(names)
        summary += list(names)
    return {"metrics": metrics, "summary": summary}


def run_steps(cfg, run):
    """Applies ``cfg.requests`` in order with ``run(script, overrides)``; returns the steps."""
    requests = OmegaConf.to_container(cfg.requests, resolve=True)
    for k, request in enumerate(requests, 1):
        check_request(k, request)
    out = Path(cfg.out_dir)
    model = str(cfg.model_path)
    steps = []
    for k, request in enumerate(requests, 1):
        step_dir = out / f"step{k}"
        record_path = step_dir / "step.json"
        if record_path.is_file():
            record = json.loads(record_path.read_text())
            if (record["request"], record["start_model"]) != (request, model):
                raise ValueError(
                    f"{step_dir} finished a different step (request "
                    f"{record['request']} from {record['start_model']}), not request "
                    f"{request} from {model}: use another out_dir"
                )
            print(f"step {k}: done before, skipped", flush=True)
        else:
            shutil.rmtree(step_dir, ignore_errors=True)  # an interrupted attempt
            print(f"step {k}: unlearning {request['forget_split']}", flush=True)
            run("train.py", train_overrides(cfg, k, request, model, step_dir / "model"))
            print(f"step {k}: evaluating", flush=True)
            run(
                "eval.py",
                eval_overrides(cfg, k, request, step_dir / "model", step_dir / "eval"),
            )
            record = {
                "step": k,
                "request": request,
                "start_model": model,
                "model": str(step_dir / "model"),
            }
            tmp = record_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(record, indent=2))
            tmp.replace(record_path)  # the step counts as done only once this exists
        steps.append({**record, **scores(step_dir / "eval")})
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
    lines = [
        f"# Continual unlearning: {title}\n",
        "| step | forget request | " + " | ".join(metrics) + " |",
        "|---" * (len(metrics) + 2) + "|",
    ]
    for s in steps:
        values = (s["metrics"].get(m) for m in metrics)
        cells = [f"{v:.4g}" if isinstance(v, (int, float)) else "n/a" for v in values]
        lines.append(
            f"| {s['step']} | {s['request']['forget_split']} | {' | '.join(cells)} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")

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


@hydra.main(
    version_base=None, config_path="../configs/continual", config_name="default"
)
def main(cfg):
    host = Path(cfg.host_dir).expanduser() if cfg.host_dir else host_dir()
    if not is_host(host):
        raise SystemExit(
            f"no open-unlearning checkout at {host}: clone it there, set "
            "OPEN_UNLEARNING_DIR or pass host_dir=..."
        )
    out = Path(cfg.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg.out_dir = str(out)
    work_dir = Path(cfg.work_dir).resolve()
    run_steps(cfg, partial(run_host, host, cwd=work_dir, check=True))
    print(f"results: {out / 'results.md'}, {out / 'results.png'}")


if __name__ == "__main__":
    main()
