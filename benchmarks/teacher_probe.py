"""Where the forget-teacher's forgetting comes from: τ, which layers, depth, answer position.

    OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/teacher_probe.py \\
        .mini_tofu/generated .mini_tofu/tofu --depths 2 8

Each positional argument is a ``mini_tofu.py`` work folder (``target/``, ``data/``);
``--depths`` adds targets of other depths finetuned on the generated authors (through the
host, into ``.teacher_probe/depth<k>``). For each target: forget and retain answer probability
(the host's ``Q_A_Prob``, computed in-process) with attention temperature τ on all layers, on
each half and on each layer alone; forget answer-token probability by position in the answer;
and the share of forget answer tokens that the current token and the *set* of earlier tokens
determine in the training text. Under uniform attention (τ → ∞) every layer reads the mean of
the earlier positions, so the model becomes such a bag-of-words reader: that share is what it
could still answer had it learned to read its context that way.
"""

import argparse
from collections import defaultdict
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from asu_plugin import AttentionSmoothing
from asu_plugin.core.inputs import IGNORE_INDEX
from asu_plugin.workflows.builders.targets import TINY_LLAMA, Setup, prepare, split_rows
from asu_plugin.workflows.builders.tiny import encode_qa
from asu_plugin.workflows.calibrate.measure import answer_probability, label_logprobs
from asu_plugin.workflows.run.runs import Runs
from asu_plugin.workflows.run.tables import markdown_table

TAUS = (1, 2, 4, 10, 32, 100, 1e4)
POSITIONS = ((1, 1), (2, 3), (4, 8), (9, 10_000))  # answer-token positions, 1-based


@torch.no_grad()
def answer_token_probs(model, tokenizer, rows):
    """Per row, the probability of each answer token (eos included) given what precedes it."""
    items = []
    for row in rows:
        ids, start = encode_qa(tokenizer, row)
        labels = [IGNORE_INDEX] * start + ids[start:]
        items.append({"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)})
    return [lp.exp() for lp in label_logprobs(model, items, tokenizer.pad_token_id)]


def qa_prob(token_probs):
    return answer_probability([p.log() for p in token_probs])


def by_position(token_probs):
    return [
        torch.cat([p[lo - 1 : hi] for p in token_probs]).mean().item()
        for lo, hi in POSITIONS
    ]


def layer_sets(num_layers):
    half = num_layers // 2
    sets = {"all": None, "lower half": list(range(half))}
    sets["upper half"] = list(range(half, num_layers))
    sets.update({f"layer {i}": [i] for i in range(num_layers)})
    return sets


def bag_determined(tokenizer, train_rows, rows):
    """Share of answer tokens that (current token, set of earlier tokens) fixes in training.

    Each context of a forget answer is looked up among the training contexts with the same
    current token and the same set of earlier tokens; the token is determined if every such
    training context continues with it. Bigram: the current token alone.
    """
    bag, bigram = defaultdict(set), defaultdict(set)
    for row in train_rows:
        ids, _ = encode_qa(tokenizer, row)
        for t in range(len(ids) - 1):
            bag[ids[t], frozenset(ids[:t])].add(ids[t + 1])
            bigram[ids[t]].add(ids[t + 1])
    counts = [0, 0, 0]
    for row in rows:
        ids, start = encode_qa(tokenizer, row)
        for t in range(start - 1, len(ids) - 1):
            counts[0] += 1
            counts[1] += bag[ids[t], frozenset(ids[:t])] == {ids[t + 1]}
            counts[2] += bigram[ids[t]] == {ids[t + 1]}
    return counts[1] / counts[0], counts[2] / counts[0]


def probe(run):
    tokenizer = AutoTokenizer.from_pretrained(run / "target")
    model = AutoModelForCausalLM.from_pretrained(run / "target").eval()
    forget = split_rows(run, "forget10")
    retain = split_rows(run, "retain_perturbed")
    grid = {}
    for name, layers in layer_sets(model.config.num_hidden_layers).items():
        for tau in TAUS:
            with AttentionSmoothing(model, tau, layers):
                forget_probs = answer_token_probs(model, tokenizer, forget)
                grid[name, tau] = (
                    qa_prob(forget_probs),
                    qa_prob(answer_token_probs(model, tokenizer, retain)),
                    by_position(forget_probs),
                )
    train = split_rows(run, "finetune")
    return model.config, grid, bag_determined(tokenizer, train, forget)


def depth_run(work, num_layers):
    """A generated-authors target with ``num_layers`` layers, finetuned like the others."""
    run = work / f"depth{num_layers}"
    setup = Setup(model={**TINY_LLAMA, "num_layers": num_layers})
    prepare(Runs(run), setup, ["target"])
    return run


def report(runs, command):
    lines = ["# Forget-teacher probe: forget answer prob (retain answer prob) by τ\n"]
    lines.append(f"Command: `{command}`\n")
    for run, (config, grid, (bag, bigram)) in runs.items():
        names = dict.fromkeys(name for name, _ in grid)
        smoothed = [
            [name, *(f"{grid[name, t][0]:.3f} ({grid[name, t][1]:.3f})" for t in TAUS)]
            for name in names
        ]
        by_tau = [[f"{tau:g}", *grid["all", tau][2]] for tau in TAUS]
        lines += [
            f"## {run}: {config.num_hidden_layers} layers, hidden {config.hidden_size}\n",
            f"Forget answer tokens determined in the training text by the current token and "
            f"the set of earlier tokens: **{bag:.2f}**; by the current token alone: "
            f"{bigram:.2f}.\n",
            markdown_table(["smoothed", *(f"τ {t:g}" for t in TAUS)], smoothed),
            "\nForget answer-token probability by position in the answer, all layers:\n",
            markdown_table(
                ["τ", *(f"tokens {lo}–{hi}" for lo, hi in POSITIONS)], by_tau
            ),
            "",
        ]
    return "\n".join(lines).replace("–10000", "+")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="*")
    parser.add_argument("--depths", type=int, nargs="*", default=[])
    parser.add_argument("--work", type=Path, default=Path(".teacher_probe"))
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results" / "teacher_probe" / "results.md",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = args.runs + [depth_run(args.work, k) for k in args.depths]
    command = " ".join(
        ["OPEN_UNLEARNING_DIR=~/open-unlearning python benchmarks/teacher_probe.py"]
        + list(map(str, args.runs))
        + (["--depths", *map(str, args.depths)] if args.depths else [])
    )
    text = report({str(run): probe(run) for run in runs}, command)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
