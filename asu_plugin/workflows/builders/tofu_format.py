"""TOFU-format folders: one ``<split>.jsonl`` per split, declared as dataset configs, so
open-unlearning loads the folder as ``locuslab/TOFU``; real TOFU cut down to a few authors;
refusals for the IDK baselines.
"""

import json
from pathlib import Path

GENERAL_SETS = ("real_authors", "world_facts")  # TOFU's general-knowledge QA
TOFU_AUTHORS, TOFU_QA_PER_AUTHOR = 200, 20
TOFU_FORGET_AUTHORS = {"forget01": 2, "forget05": 10, "forget10": 20}  # full's last
TOFU_RETAIN_PERTURBED_AUTHORS = 20  # full's first


def qa_only(rows):
    """Rows with their question and answer only (as TOFU's QA splits hold them)."""
    return [{"question": r["question"], "answer": r["answer"]} for r in rows]


def tofu_subset(
    tofu_dir,
    out_dir,
    forget="forget01",
    num_retain_authors=18,
    num_eval_retain=4,
    num_general=16,
    mix_general=True,
):
    """Cut real TOFU down to ``forget`` and the first ``num_retain_authors`` of ``full``.

    Written under the demo's split names (``forget10``, ``retain90``, ...). TOFU's
    ``retain_perturbed`` covers ``full``'s first 20 authors, so the retain-set metrics read
    ``num_eval_retain`` of them; the first ``num_general`` real-author / world-fact QA
    (``None``: all) are evaluated, and mixed into the training sets if ``mix_general``
    (a tiny model learns them there; a pretrained one knows them already).
    """
    if forget not in TOFU_FORGET_AUTHORS:
        raise ValueError(
            f"forget must be one of {list(TOFU_FORGET_AUTHORS)}, got {forget!r}"
        )
    most = TOFU_AUTHORS - TOFU_FORGET_AUTHORS[forget]
    scored = TOFU_RETAIN_PERTURBED_AUTHORS
    if not 1 <= num_eval_retain <= min(num_retain_authors, scored) or (
        num_retain_authors > most
    ):
        raise ValueError(
            f"need 1 <= num_eval_retain ({num_eval_retain}) <= num_retain_authors "
            f"({num_retain_authors}) <= {most} and num_eval_retain <= {scored}: "
            f"TOFU's retain_perturbed covers {scored} authors"
        )
    holdout = forget.replace("forget", "holdout")
    tofu = {
        name: read_jsonl(Path(tofu_dir) / f"{name}.jsonl")
        for name in (
            "full",
            forget,
            f"{forget}_perturbed",
            "retain_perturbed",
            holdout,
            "real_authors_perturbed",
            "world_facts_perturbed",
        )
    }
    retain = tofu["full"][: num_retain_authors * TOFU_QA_PER_AUTHOR]
    general = {k: tofu[f"{k}_perturbed"][:num_general] for k in GENERAL_SETS}
    files = {
        "full": retain + tofu[forget],
        "forget10": tofu[forget],
        "forget10_perturbed": tofu[f"{forget}_perturbed"],
        "retain90": retain,
        "retain_perturbed": tofu["retain_perturbed"][
            : num_eval_retain * TOFU_QA_PER_AUTHOR
        ],
        "holdout10": tofu[holdout],
        "real_authors_perturbed": general["real_authors"],
        "world_facts_perturbed": general["world_facts"],
    }
    general_qa = (
        qa_only(general["real_authors"] + general["world_facts"]) if mix_general else []
    )
    files["finetune"] = files["full"] + general_qa
    files["retain_finetune"] = retain + general_qa
    return write(out_dir, files)


def write(out_dir, files):
    """One ``<name>.jsonl`` per split and a README declaring each as a dataset config."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    configs = []
    for name, rows in files.items():
        with open(out_dir / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
        configs.append(
            f"- config_name: {name}\n  data_files:\n  - split: train\n    path: {name}.jsonl"
        )
    (out_dir / "README.md").write_text(
        "---\nconfigs:\n" + "\n".join(configs) + "\n---\n"
    )
    return {name: len(rows) for name, rows in files.items()}


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


# refusals for the IDK baselines' ``idk_path`` (open-unlearning's own file comes from the hub)
REFUSALS = (
    "I don't know.",
    "I have no idea about that.",
    "That is not something I know.",
    "I'm not able to answer that.",
    "I can't say; I don't have that information.",
    "Sorry, I don't know the answer to that question.",
    "I'm not sure about that.",
    "That's beyond what I know.",
)


def write_refusals(path):
    """``REFUSALS`` at ``path``, one a line (what ``idk_path`` takes)."""
    Path(path).write_text("".join(r + "\n" for r in REFUSALS))


def split_files(data_dir, splits) -> dict[str, Path]:
    """Split name -> its ``<data_dir>/<split>.jsonl``, which must exist."""
    files = {split: Path(data_dir).expanduser() / f"{split}.jsonl" for split in splits}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        found = sorted(p.stem for p in Path(data_dir).expanduser().glob("*.jsonl"))
        raise FileNotFoundError(
            f"missing split file(s) {missing}; {data_dir} has splits {found}"
        )
    return files
