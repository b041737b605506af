"""What a model says instead of a forgotten answer: each greedy forget answer of a point file
sorted by rules, counted per point.

    python benchmarks/answer_kinds.py --tofu-dir TOFU --results benchmarks/results/smollm2_tofu_round2 \
        target retain DareU_lr0p0003 ...

The kinds, the first rule that holds: ``empty``; ``refusal`` (an "I don't know" phrase); ``loop``
(at least half of its words repeats); ``unchanged`` (the target's answer, word for word);
``name kept`` (another answer with the question's author's name); ``another author`` (another
TOFU author's name without the question's author's); ``other``. An author's name is the
capitalised phrase of two or more words that most of the author's 20 rows contain (none when
it is in fewer than half).
"""

import argparse
import json
import re
from collections import Counter
from pathlib import Path

from asu_plugin.workflows.builders.tofu_format import read_jsonl, split_files
from asu_plugin.workflows.run.fluency import repetition

KINDS = (
    "unchanged",
    "name kept",
    "another author",
    "other",
    "loop",
    "empty",
    "refusal",
)
ROWS_PER_AUTHOR = 20
LOOP = 0.5
REFUSAL = re.compile(
    r"\bI (?:don't|do not) know\b|\bI'm not sure\b|\bI am not sure\b|\bno idea\b"
    r"|\bnot (?:able|something I know)\b|\bcan't say\b|\bbeyond what I know\b",
    re.IGNORECASE,
)
_WORD = r"[A-Z][\w'-]*"
_PHRASE = re.compile(rf"{_WORD}(?:\s+{_WORD})+")


def author_name(rows) -> str | None:
    """The capitalised phrase (≥ 2 words) in most of ``rows``' questions and answers, the
    longest among equals; None when it is in fewer than half of them (no name stands out)."""
    counts = Counter()
    for row in rows:
        found = set()
        for match in _PHRASE.finditer(f"{row['question']} {row['answer']}"):
            words = re.sub(r"'s\b", "", match.group()).split()
            found |= {
                " ".join(words[i:j])
                for i in range(len(words))
                for j in range(i + 2, len(words) + 1)
            }
        counts.update(found)
    name, count = max(counts.items(), key=lambda kv: (kv[1], len(kv[0].split())))
    return name if 2 * count >= len(rows) else None


def author_names(rows) -> list[str]:
    """Each block of ``ROWS_PER_AUTHOR`` rows' author name, in order."""
    return [
        author_name(rows[i : i + ROWS_PER_AUTHOR])
        for i in range(0, len(rows), ROWS_PER_AUTHOR)
    ]


def kind(answer, target_answer, name, others) -> str:
    """The first of the module's rules that ``answer`` meets."""
    if not answer.strip():
        return "empty"
    if REFUSAL.search(answer):
        return "refusal"
    if repetition([answer]) >= LOOP:
        return "loop"
    if answer.strip() == target_answer.strip():
        return "unchanged"
    if name and name in answer:
        return "name kept"
    if any(other and other != name and other in answer for other in others):
        return "another author"
    return "other"


def counts(point, target, own, names) -> Counter:
    """``point``'s forget answers by kind; ``own``: the forget authors' names, in the
    evaluator's order; ``names``: every TOFU author's name."""
    return Counter(
        kind(answer, target_answer, own[i // ROWS_PER_AUTHOR], names)
        for i, (answer, target_answer) in enumerate(
            zip(point["answers"], target["answers"], strict=True)
        )
    )


def table(results, points, tofu_dir) -> str:
    """The counts of ``points`` (file names in ``results/points``) as a markdown table."""
    target = json.loads((results / "points" / "target.json").read_text())
    forget = target["setup"]["data"]["forget"]
    files = split_files(tofu_dir, ["full", forget])
    names = author_names(read_jsonl(files["full"]))
    own = author_names(read_jsonl(files[forget]))
    lines = [
        "| point | " + " | ".join(KINDS) + " |",
        "|---|" + "---|" * len(KINDS),
    ]
    for name in points:
        point = json.loads((results / "points" / f"{name}.json").read_text())
        found = counts(point, target, own, names)
        lines.append(f"| {name} | " + " | ".join(str(found[k]) for k in KINDS) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tofu-dir", type=Path, required=True)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("points", nargs="+", help="point file names, without .json")
    args = parser.parse_args()
    missing = [
        p for p in args.points if not (args.results / "points" / f"{p}.json").is_file()
    ]
    if missing:
        parser.error(f"no point file for {missing} in {args.results / 'points'}")
    try:
        print(table(args.results, args.points, args.tofu_dir))
    except FileNotFoundError as error:
        parser.error(f"--tofu-dir: {error}")


if __name__ == "__main__":
    main()
