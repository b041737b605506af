"""The calibration's report: ``calibration.md``, ``calibration.png``, ``calibration.json``."""

import json

from asu_plugin.workflows.calibrate.rule import (
    RULE,
    content_drop,
    qualifies,
    recommendation_text,
)
from asu_plugin.workflows.run.tables import markdown_table

HEADER = [
    "layer set",
    "τ",
    "forget prob",
    "retain prob",
    "general prob",
    "forget content-token prob",
    "forget function-token prob",
    "content drop",
    "empty rate",
    "repetition",
    "qualifies",
    "sample forget answer",
]


def summary_rows(results, rule):
    baseline = results[0]
    return [
        [
            r["layer_set"],
            f"{r['temperature']:g}",
            r["forget_prob"],
            r["retain_prob"],
            r["general_prob"],
            r["content_prob"],
            r["function_prob"],
            None if r is baseline else content_drop(r, baseline),
            r["empty_rate"],
            r["repetition"],
            "yes" if qualifies(r, baseline, rule) else "no",
            r["sample"][:60].replace("|", "/").replace("\n", " "),
        ]
        for r in results
    ]


def write_report(out, command, results, chosen, rule, meta):
    """``calibration.md``, ``calibration.png`` and ``calibration.json`` in ``out``."""
    rule_text = RULE.format(**rule)
    lines = [
        "# Attention-temperature calibration\n",
        f"`{command}`\n",
        f"Forget split `{meta['forget_split']}`, retain `{meta['retain_split']}`, "
        f"general {meta['general_splits']}; {meta['rows']} rows each; greedy answers "
        f"of {meta['max_new_tokens']} new tokens; the sweep took "
        f"{meta['cpu_seconds']:.1f} s CPU time ({meta['wall_seconds']:.1f} s wall).\n",
        markdown_table(HEADER, summary_rows(results, rule)),
        "",
        recommendation_text(chosen) + "\n",
        rule_text,
    ]
    (out / "calibration.md").write_text("\n".join(lines) + "\n")
    record = {
        "command": command,
        **meta,
        "rule": rule | {"text": rule_text},
        "recommendation": chosen
        and {k: chosen[k] for k in ("layer_set", "layers", "temperature")},
        "results": results,
    }
    (out / "calibration.json").write_text(
        json.dumps(record, indent=2, ensure_ascii=False)
    )
    plot(out / "calibration.png", results)


PLOTTED = {
    "content_prob": "forget content tokens",
    "function_prob": "forget function tokens",
    "forget_prob": "forget answers",
    "retain_prob": "retain answers",
    "general_prob": "general answers",
}


def plot(path, results):
    """One panel per layer set: each ``PLOTTED`` probability against τ (log x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    baseline = results[0]
    names = list(dict.fromkeys(r["layer_set"] for r in results[1:]))
    fig, axes = plt.subplots(
        1, len(names), figsize=(4.5 * len(names), 3.8), sharey=True, squeeze=False
    )
    for ax, name in zip(axes[0], names, strict=True):
        curve = sorted(
            [baseline] + [r for r in results if r["layer_set"] == name],
            key=lambda r: r["temperature"],
        )
        taus = [r["temperature"] for r in curve]
        for key, label in PLOTTED.items():
            ax.plot(
                taus,
                [float("nan") if r[key] is None else r[key] for r in curve],
                marker="o",
                label=label,
            )
        ax.set(xscale="log", xlabel="attention temperature τ", title=f"layers: {name}")
        ax.set_xticks(taus, [f"{t:g}" for t in taus], minor=False)
        ax.minorticks_off()
        ax.tick_params(axis="x", labelrotation=45, labelsize="small")
    axes[0][0].set_ylabel("mean probability")
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
