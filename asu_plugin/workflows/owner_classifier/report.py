"""The owner classifier's report: ``attribution.md`` and ``attribution.json``."""

import json

from asu_plugin.dareu import OTHER
from asu_plugin.workflows.run.tables import markdown_table


def write_report(out, command, record):
    lines = [
        "# Owner classifier\n",
        f"`{command}`\n",
        f"{len(record['labels']) - 1} owners + `{OTHER}`; forget owners "
        f"{record['forget_owners']}; trained on {record['train_rows']} texts "
        f"({record['cpu_seconds']:.0f} s CPU); classifier in `{record['classifier']}`.\n",
        "## Held-out accuracy\n",
        markdown_table(
            ["texts", "rows", "accuracy"],
            [[k, v["rows"], v["accuracy"]] for k, v in record["held_out"].items()],
        ),
        "",
    ]
    if record["separation"]:
        sep = record["separation"]
        lines += [
            f"## Target against retain model, {sep['samples_per_model']} sampled forget "
            "answers each\n",
            markdown_table(
                ["ROC AUC", "target mean", "retain mean"],
                [[sep["auc"], sep["target_mean"], sep["retain_mean"]]],
            ),
            "",
        ]
    for title, of in (("Greedy", lambda m: m), ("Sampled", lambda m: m["sampled"])):
        if not record["models"]:
            break
        lines += [
            f"## {title} forget answers\n",
            "Forget-owner probability = minus DareU's reward.\n",
            markdown_table(
                [
                    "model",
                    "forget-owner prob",
                    "top: forget owner",
                    "top: other",
                    "top: another owner",
                    "sample answer",
                ],
                [
                    [
                        name,
                        of(m)["forget_owner_probability"],
                        of(m)["top_forget_owner"],
                        of(m)["top_other"],
                        of(m)["top_another_owner"],
                        of(m)["answers"][0][:60].replace("|", "/").replace("\n", " "),
                    ]
                    for name, m in record["models"].items()
                ],
            ),
            "",
        ]
    (out / "attribution.md").write_text("\n".join(lines) + "\n")
    (out / "attribution.json").write_text(
        json.dumps(record, indent=2, ensure_ascii=False)
    )
