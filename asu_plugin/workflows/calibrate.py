"""Calibrate ASU's attention temperature τ for a model: what its forget-teacher looks like.

The teacher is the model with attention softmax temperature τ on a set of layers. For
each (layer set, τ) this measures, on TOFU-format data (a folder of ``<split>.jsonl``
with ``question`` / ``answer``), tokenised exactly as open-unlearning does for the host
model config:

- forget / retain / general answer probability: the host's Q_A_Prob, the mean over rows
  of exp(mean log-probability of the answer's label tokens);
- forget function- vs content-token probability: the mean probability of the forget
  answers' label tokens of each class. A token is a *function* token when its text,
  stripped and lower-cased, is in ``FUNCTION_WORDS`` or has no letter or digit
  (punctuation, whitespace); special tokens (end of turn, eos) are in neither class;
  every other token is a *content* token (a word piece that spells a listed word,
  e.g. "a" in "Kuw|a|it", counts as a function token: the rule reads tokens alone);
- fluency of greedy answers to the forget questions: the empty-answer rate, the
  repeated-word rate of the non-empty answers (``runs.repetition``), a sample answer.

Recommendation (``RULE``): among the swept (layer set, τ > 1) whose forget function-token
probability is at least ``min_function_ratio`` × its τ = 1 value, whose empty-answer rate
is ≤ ``max_empty`` and whose repetition rate is ≤ ``max_repetition``, the one with the
largest relative drop of forget content-token probability from τ = 1,
1 − p_content(τ) / p_content(1); ties go to the smaller τ, then to the layer set listed
first. When none qualifies the recommendation is "none".

``python -m asu_plugin.workflows.calibrate model=<host model config> data_dir=...``
(config: ``configs/calibrate/default.yaml``); writes ``calibration.md``,
``calibration.png`` and ``calibration.json`` to ``out_dir``.
"""

import importlib
import json
import shlex
import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import OmegaConf
from transformers import AutoConfig

from asu_plugin.asu.smoothing import AttentionSmoothing, check_temperature
from asu_plugin.workflows.demo_data import read_jsonl
from asu_plugin.workflows.entry import BadSettings, check_settings, checked, stops
from asu_plugin.workflows.host import require_host
from asu_plugin.workflows.runs import repetition
from asu_plugin.workflows.tables import markdown_table

IGNORE_INDEX = -100  # the host's label for tokens without loss

FUNCTION_WORDS = frozenset(
    """a an the this that these those some any each every no
    me my mine we us our you your he him his she her hers it its they them their
    who whom whose which what where when how why
    and or but nor so yet if than then as because while although though
    of in on at to for from by with about into onto over under between among through
    during before after above below up down out off near within without upon via per
    is am are was were be been being do does did done have has had having
    will would shall should can could may might must
    not also very too just only there here 's""".split()
)

# layer sets named by a part of the model's layers: (first part, end part, parts)
SPANS = {
    "first_half": (0, 1, 2),
    "second_half": (1, 2, 2),
    "first_third": (0, 1, 3),
    "middle_third": (1, 2, 3),
    "last_third": (2, 3, 3),
}
LAYER_SETS_ALLOWED = f"allowed: all, {', '.join(SPANS)} or a list of layer indices"

RULE = (
    "Recommended: among the swept (layer set, τ > 1) whose forget function-token "
    "probability is at least {min_function_ratio} × its τ = 1 value, whose empty-answer "
    "rate is ≤ {max_empty} and whose repetition rate is ≤ {max_repetition}, the one with "
    "the largest relative drop of forget content-token probability from τ = 1, "
    "1 − p_content(τ) / p_content(1); ties go to the smaller τ, then to the layer set "
    'listed first. When none qualifies the recommendation is "none".'
)


def check_temperatures(temperatures) -> list[float]:
    """The sorted distinct τ values; τ = 1 (the model itself) is always measured."""
    values = {check_temperature(t) for t in temperatures or ()}
    if not values - {1.0}:
        raise ValueError(
            f"temperatures={temperatures!r} has no τ other than 1 to compare with the "
            "model: give the values to sweep, e.g. [1.5, 2]"
        )
    return sorted(values | {1.0})


def resolve_layer_sets(layer_sets, num_layers) -> dict[str, list[int] | None]:
    """Layer-set name -> its layers (``None``: all) in a model of ``num_layers``.

    An entry is ``all``, a name in ``SPANS`` or a list of layer indices (named by them)."""
    if not layer_sets:
        raise ValueError(f"layer_sets is empty; {LAYER_SETS_ALLOWED}")
    return dict(layer_set(spec, num_layers) for spec in layer_sets)


def layer_set(spec, num_layers) -> tuple[str, list[int] | None]:
    if spec == "all":
        return "all", None
    if isinstance(spec, str) and spec in SPANS:
        start, end, parts = SPANS[spec]
        layers = list(range(num_layers * start // parts, num_layers * end // parts))
        if not layers:
            raise ValueError(
                f"layer set {spec}: a model of {num_layers} layers has none"
            )
        return spec, layers
    if not isinstance(spec, (list, tuple)) or not spec:
        raise ValueError(f"unknown layer set {spec!r}; {LAYER_SETS_ALLOWED}")
    for idx in spec:
        if (
            isinstance(idx, bool)
            or not isinstance(idx, int)
            or not 0 <= idx < num_layers
        ):
            raise ValueError(
                f"layer set {list(spec)}: unknown layer index {idx!r}; the model has "
                f"layers 0..{num_layers - 1}"
            )
    layers = sorted(set(spec))
    return str(layers), layers


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


def spread_rows(rows, count):
    """``count`` rows spread evenly over ``rows`` (all of them when fewer)."""
    if count >= len(rows):
        return rows
    return [rows[i * len(rows) // count] for i in range(count)]


def host_module(host, name):
    """Import ``name`` from the host checkout's ``src`` (put on ``sys.path`` first)."""
    src = str(Path(host) / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    return importlib.import_module(name)


def host_encoder(host, tokenizer, template_args, max_length):
    """``encode(question, answer, generate)``: the host's ``preprocess_chat_instance``."""
    preprocess = host_module(host, "data.utils").preprocess_chat_instance
    template = OmegaConf.to_container(template_args, resolve=True)

    def encode(question, answer, generate=False):
        return preprocess(
            tokenizer, template, [question], [answer], max_length, generate
        )

    return encode


def is_function_token(text) -> bool:
    """``FUNCTION_WORDS`` or no letter or digit (punctuation, whitespace)."""
    word = text.strip().lower()
    return word in FUNCTION_WORDS or not any(c.isalnum() for c in word)


def token_classes(tokenizer, label_ids) -> list[str | None]:
    """Per label token: its class, "function" or "content"; ``None`` if special."""
    special = set(tokenizer.all_special_ids)
    return [
        None
        if i in special
        else "function"
        if is_function_token(tokenizer.decode([i]))
        else "content"
        for i in label_ids
    ]


def encode_split(encode, tokenizer, rows, classify=False):
    """Items of ``rows`` for scoring: ``input_ids``, ``labels`` (and token ``classes``)."""
    items = []
    for row in rows:
        item = encode(row["question"], row["answer"])
        if classify:
            label_ids = item["labels"][item["labels"] != IGNORE_INDEX].tolist()
            item["classes"] = token_classes(tokenizer, label_ids)
        items.append(item)
    return items


def right_pad(tensors, value):
    return torch.nn.utils.rnn.pad_sequence(
        list(tensors), batch_first=True, padding_value=value
    )


@torch.no_grad()
def label_logprobs(model, items, pad_id, batch_size=8) -> list[torch.Tensor]:
    """Per item, the log-probabilities of its label tokens (as the host shifts them)."""
    logprobs = []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        input_ids = right_pad((b["input_ids"] for b in batch), pad_id)
        labels = right_pad((b["labels"] for b in batch), IGNORE_INDEX)
        mask = right_pad((torch.ones_like(b["input_ids"]) for b in batch), 0)
        logits = (
            model(
                input_ids=input_ids.to(model.device),
                attention_mask=mask.to(model.device),
            )
            .logits[:, :-1]
            .float()
        )
        targets = labels[:, 1:].to(model.device)
        token_logprobs = torch.gather(
            logits.log_softmax(-1), 2, targets.clamp(min=0).unsqueeze(-1)
        ).squeeze(-1)
        logprobs += [
            lp[t != IGNORE_INDEX].cpu()
            for lp, t in zip(token_logprobs, targets, strict=True)
        ]
    return logprobs


def answer_probability(logprobs) -> float:
    """The host's Q_A_Prob: mean over rows of exp(mean label-token log-probability)."""
    return torch.stack([lp.mean().exp() for lp in logprobs]).mean().item()


def class_probability(logprobs, items, kind) -> float | None:
    """Mean probability of the label tokens of class ``kind`` over all items."""
    probs = [
        p
        for lp, item in zip(logprobs, items, strict=True)
        for p, c in zip(lp.exp().tolist(), item["classes"], strict=True)
        if c == kind
    ]
    return sum(probs) / len(probs) if probs else None


@torch.no_grad()
def greedy_answers(model, tokenizer, prompts, max_new_tokens, batch_size=8):
    """Greedy answers (special tokens dropped, stripped) to left-padded prompt batches."""
    answers = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        width = max(len(p) for p in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, prompt in enumerate(batch):
            input_ids[row, width - len(prompt) :] = prompt
            mask[row, width - len(prompt) :] = 1
        output = model.generate(
            input_ids=input_ids.to(model.device),
            attention_mask=mask.to(model.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            top_p=None,
            temperature=None,
            pad_token_id=tokenizer.pad_token_id,
        )
        texts = tokenizer.batch_decode(output[:, width:], skip_special_tokens=True)
        answers += [text.strip() for text in texts]
    return answers


def fluency(answers) -> dict:
    """Empty-answer rate, repeated-word rate of the non-empty answers, a sample."""
    spoken = [a for a in answers if a]
    return {
        "empty_rate": 1 - len(spoken) / len(answers),
        "repetition": repetition(spoken) if spoken else None,
        "sample": answers[0],
    }


def prepare(encode, tokenizer, rows, splits):
    """Scoring items per split (forget ones with token classes) and the forget prompts.

    ``rows``: split -> QA rows; ``splits``: the ``forget``, ``retain`` and ``general``
    (a list) split names."""
    forget = splits["forget"]
    items = {
        split: encode_split(encode, tokenizer, split_rows, split == forget)
        for split, split_rows in rows.items()
    }
    if "content" not in {c for item in items[forget] for c in item["classes"]}:
        raise ValueError(f"the {forget} answers have no content tokens to measure")
    prompts = [
        encode(row["question"], row["answer"], generate=True)["input_ids"]
        for row in rows[forget]
    ]
    return {"items": items, "prompts": prompts, **splits}


def measure(model, tokenizer, data, max_new_tokens, batch_size):
    """The teacher's numbers for the model as it is now (smoothed or not)."""
    pad_id = tokenizer.pad_token_id
    logprobs = {
        split: label_logprobs(model, items, pad_id, batch_size)
        for split, items in data["items"].items()
    }
    probs = {split: answer_probability(lp) for split, lp in logprobs.items()}
    forget_items, forget_lp = data["items"][data["forget"]], logprobs[data["forget"]]
    answers = greedy_answers(
        model, tokenizer, data["prompts"], max_new_tokens, batch_size
    )
    return {
        "probability": probs,
        "forget_prob": probs[data["forget"]],
        "retain_prob": probs[data["retain"]],
        "general_prob": sum(probs[s] for s in data["general"]) / len(data["general"]),
        "content_prob": class_probability(forget_lp, forget_items, "content"),
        "function_prob": class_probability(forget_lp, forget_items, "function"),
        **fluency(answers),
        "answers": answers,
    }


def sweep(model, tokenizer, data, temperatures, layer_sets, **settings):
    """τ = 1 once (``layer_set`` "model"), then every (layer set, τ > 1)."""
    results = [
        {"layer_set": "model", "layers": None, "temperature": 1.0}
        | measure(model, tokenizer, data, **settings)
    ]
    for name, layers in layer_sets.items():
        for temperature in (t for t in temperatures if t != 1.0):
            print(f"layer set {name}, τ {temperature:g}", flush=True)
            with AttentionSmoothing(model, temperature, layers):
                row = measure(model, tokenizer, data, **settings)
            results.append(
                {"layer_set": name, "layers": layers, "temperature": temperature} | row
            )
    return results


def qualifies(result, baseline, rule) -> bool:
    """Whether ``result`` (τ > 1) passes the rule's fluency and function-token limits."""
    return (
        result["temperature"] > 1
        and result["function_prob"] is not None
        and result["function_prob"]
        >= rule["min_function_ratio"] * baseline["function_prob"]
        and result["empty_rate"] <= rule["max_empty"]
        and result["repetition"] is not None
        and result["repetition"] <= rule["max_repetition"]
    )


def content_drop(result, baseline) -> float:
    """1 − p_content(τ) / p_content(1)."""
    return 1 - result["content_prob"] / baseline["content_prob"]


def recommend(results, rule):
    """The result ``RULE`` picks (``results[0]`` is τ = 1), or ``None``."""
    baseline = results[0]
    candidates = [r for r in results[1:] if qualifies(r, baseline, rule)]
    if not candidates:
        return None
    best = max(content_drop(r, baseline) for r in candidates)
    ties = [r for r in candidates if content_drop(r, baseline) == best]
    return min(ties, key=lambda r: r["temperature"])  # min keeps the first of equals


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


def recommendation_text(chosen) -> str:
    if chosen is None:
        return "**Recommended τ: none** (no swept τ qualifies)."
    layers = "all layers" if chosen["layers"] is None else f"layers {chosen['layers']}"
    return (
        f"**Recommended τ: {chosen['temperature']:g}** on layer set "
        f"`{chosen['layer_set']}` ({layers})."
    )


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


def check_inputs(cfg):
    """τ values, layer sets and split files of ``cfg``, checked before any model loads
    (``BadSettings`` names every bad one)."""
    splits = {
        "forget": cfg.forget_split,
        "retain": cfg.retain_split,
        "general": list(cfg.general_splits),
    }
    model_path = "model.model_args.pretrained_model_name_or_path"
    values, problems = checked(
        {
            "temperatures": lambda: check_temperatures(cfg.temperatures),
            "data_dir": lambda: split_files(
                cfg.data_dir, [splits["forget"], splits["retain"], *splits["general"]]
            ),
            model_path: lambda: num_layers(
                cfg.model.model_args.pretrained_model_name_or_path
            ),
        }
    )
    if model_path in values:
        layers = OmegaConf.to_container(cfg.layer_sets, resolve=True)
        sets = {"layer_sets": lambda: resolve_layer_sets(layers, values[model_path])}
        resolved, more = checked(sets)
        values, problems = values | resolved, problems | more
    if problems or "layer_sets" not in values:  # a missing setting is reported apart
        raise BadSettings(problems)
    return values["temperatures"], values["layer_sets"], splits, values["data_dir"]


def num_layers(model_path) -> int:
    """The number of layers in the config of ``model_path`` (a folder or hub id)."""
    return AutoConfig.from_pretrained(model_path).num_hidden_layers


def load_model(host, model_cfg):
    """Model and tokenizer as the host's ``get_model`` loads them for ``model_cfg``."""
    model, tokenizer = host_module(host, "model").get_model(model_cfg.copy())
    return model.eval(), tokenizer


def calibrate(cfg, command):
    """Check the inputs, load the model, sweep, write the report; the chosen result."""
    temperatures, layer_sets, splits, files = check_inputs(cfg)
    host = require_host()
    torch.set_num_threads(cfg.num_threads)
    model, tokenizer = load_model(host, cfg.model)
    encode = host_encoder(host, tokenizer, cfg.model.template_args, cfg.max_length)
    rows = {
        split: spread_rows(read_jsonl(path), cfg.rows) for split, path in files.items()
    }
    data = prepare(encode, tokenizer, rows, splits)
    start, start_cpu = time.time(), time.process_time()
    results = sweep(
        model,
        tokenizer,
        data,
        temperatures,
        layer_sets,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
    )
    rule = OmegaConf.to_container(cfg.rule, resolve=True)
    chosen = recommend(results, rule)
    meta = {
        "model": str(cfg.model.model_args.pretrained_model_name_or_path),
        "forget_split": splits["forget"],
        "retain_split": splits["retain"],
        "general_splits": splits["general"],
        "rows": cfg.rows,
        "max_new_tokens": cfg.max_new_tokens,
        "cpu_seconds": time.process_time() - start_cpu,
        "wall_seconds": time.time() - start,
    }
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_report(out, command, results, chosen, rule, meta)
    return chosen


EXAMPLE = (
    "python -m asu_plugin.workflows.calibrate model=SmolLM2-135M-Instruct "
    "data_dir=~/TOFU layer_sets=[all,second_half]"
)


@hydra.main(
    version_base=None, config_path="../configs/calibrate", config_name="default"
)
def _main(cfg):
    command = "python -m asu_plugin.workflows.calibrate " + shlex.join(sys.argv[1:])
    with stops("calibrate"):
        chosen = calibrate(cfg, command)
    print(recommendation_text(chosen))
    print(f"report: {Path(cfg.out_dir).resolve() / 'calibration.md'}")


def main():
    check_settings("calibrate", sys.argv[1:], check_inputs, EXAMPLE, groups=["model"])
    _main()


if __name__ == "__main__":
    main()
