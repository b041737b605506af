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
  repeated-word rate of the non-empty answers (``run.fluency.repetition``), a sample answer.

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

import shlex
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from transformers import AutoConfig

from asu_plugin.asu import check_temperature
from asu_plugin.workflows.builders.tofu_format import read_jsonl, split_files
from asu_plugin.workflows.calibrate.measure import prepare, sweep
from asu_plugin.workflows.calibrate.report import write_report
from asu_plugin.workflows.calibrate.rule import recommend, recommendation_text
from asu_plugin.workflows.run.entry import BadSettings, checked, workflow
from asu_plugin.workflows.run.host import (
    describe_device,
    host_encoder,
    load_model,
    require_host,
    resolve_device,
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


def spread_rows(rows, count):
    """``count`` rows spread evenly over ``rows`` (all of them when fewer)."""
    if count >= len(rows):
        return rows
    return [rows[i * len(rows) // count] for i in range(count)]


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
            "device": lambda: resolve_device(cfg.device),
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


def calibrate(cfg, command):
    """Check the inputs, load the model, sweep, write the report; the chosen result."""
    temperatures, layer_sets, splits, files = check_inputs(cfg)
    host, device = require_host(), resolve_device(cfg.device)
    print(f"calibrate: {describe_device(device, cfg.num_threads)}", flush=True)
    torch.set_num_threads(cfg.num_threads)
    model, tokenizer = load_model(host, cfg.model, device)
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


@workflow("calibrate", check_inputs, EXAMPLE, groups=["model"])
def main(cfg):
    command = "python -m asu_plugin.workflows.calibrate " + shlex.join(sys.argv[1:])
    chosen = calibrate(cfg, command)
    print(recommendation_text(chosen))
    print(f"report: {Path(cfg.out_dir).resolve() / 'calibration.md'}")
