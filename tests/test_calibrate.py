"""The τ calibration tool: teacher measurements, token classes, the rule, input checks."""

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from transformers import AutoModelForCausalLM, AutoTokenizer

import asu_plugin
from asu_plugin.asu.smoothing import AttentionSmoothing
from asu_plugin.workflows.builders.authors import generate
from asu_plugin.workflows.builders.tiny import (
    PROMPT,
    build_tiny_llama,
    build_tokenizer,
    qa_texts,
)
from asu_plugin.workflows.builders.tofu_format import read_jsonl, split_files
from asu_plugin.workflows.calibrate import workflow as calibrate
from asu_plugin.workflows.calibrate.measure import (
    answer_probability,
    class_probability,
    label_logprobs,
    prepare,
    sweep,
)
from asu_plugin.workflows.calibrate.report import write_report
from asu_plugin.workflows.calibrate.rule import recommend
from asu_plugin.workflows.calibrate.tokens import is_function_token, token_classes
from asu_plugin.workflows.calibrate.workflow import (
    check_temperatures,
    resolve_layer_sets,
    spread_rows,
)
from asu_plugin.workflows.run.fluency import fluency
from asu_plugin.workflows.run.host import host_module, load_model

from conftest import tiny_model

CONFIGS = str(Path(asu_plugin.__file__).parent / "configs" / "calibrate")
RULE = {"min_function_ratio": 0.5, "max_empty": 0.2, "max_repetition": 0.3}


def qa_items(lengths=(12, 9, 15), vocab_size=96, seed=0):
    """Unpadded items of different lengths; the second half of each is the answer."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for n in lengths:
        input_ids = torch.randint(3, vocab_size, (n,), generator=g)
        labels = input_ids.clone()
        labels[: n // 2] = -100
        items.append({"input_ids": input_ids, "labels": labels})
    return items


@torch.no_grad()
def plain_answer_probability(model, items):
    """Q_A_Prob from the model's logits, one unpadded row at a time."""
    probs = []
    for item in items:
        logprobs = model(item["input_ids"][None]).logits[0].log_softmax(-1)
        answer = (item["labels"] != -100).nonzero().squeeze(-1)
        token_logprobs = logprobs[answer - 1, item["input_ids"][answer]]
        probs.append(token_logprobs.mean().exp())
    return torch.stack(probs).mean().item()


def test_tau_one_reproduces_the_plain_answer_probability():
    model, items = tiny_model("llama"), qa_items()
    with AttentionSmoothing(model, 1.0):
        measured = answer_probability(label_logprobs(model, items, pad_id=0))
    assert measured == pytest.approx(plain_answer_probability(model, items), rel=1e-5)


def test_larger_tau_changes_the_answer_probability_and_is_undone():
    model, items = tiny_model("llama"), qa_items()
    plain = answer_probability(label_logprobs(model, items, pad_id=0))
    with AttentionSmoothing(model, 3.0):
        smoothed = answer_probability(label_logprobs(model, items, pad_id=0))
    assert smoothed != pytest.approx(plain, rel=0.05)
    assert answer_probability(label_logprobs(model, items, pad_id=0)) == plain


def test_function_and_content_tokens_on_a_word_level_tokenizer():
    tokenizer = build_tokenizer(["The author was born in Paris , in 1956 ."])
    ids = tokenizer("The author was born in Paris , in 1956 .")["input_ids"]
    ids.append(tokenizer.eos_token_id)
    assert token_classes(tokenizer, ids) == [
        "function",  # The
        "content",  # author
        "function",  # was
        "content",  # born
        "function",  # in
        "content",  # Paris
        "function",  # ,
        "function",  # in
        "content",  # 1956
        "function",  # .
        None,  # </s>: special, in neither class
    ]


@pytest.mark.parametrize(
    "text, function",
    [(" The", True), ("\n", True), ("'s", True), (" -", True), (" Kuwait", False)]
    + [("1956", False), (" author", False)],
)
def test_function_token_rule(text, function):
    assert is_function_token(text) is function


def test_class_probability_pools_the_tokens_of_a_class():
    logprobs = [torch.tensor([0.5, 0.25, 1.0]).log(), torch.tensor([0.75]).log()]
    items = [{"classes": ["function", "content", None]}, {"classes": ["content"]}]
    assert class_probability(logprobs, items, "content") == pytest.approx(0.5)
    assert class_probability(logprobs, items, "function") == pytest.approx(0.5)
    assert class_probability(logprobs[1:], items[1:], "function") is None


def test_fluency_separates_empty_answers_from_repetition():
    result = fluency(["born in Paris", "", "the the the the"])
    assert result["empty_rate"] == pytest.approx(1 / 3)
    assert result["repetition"] == pytest.approx((0 + 0.75) / 2)
    assert result["sample"] == "born in Paris"
    assert fluency(["", ""])["repetition"] is None


def result(layer_set, tau, content, function=0.6, empty=0.0, repetition=0.1):
    return {
        "layer_set": layer_set,
        "layers": None,
        "temperature": tau,
        "content_prob": content,
        "function_prob": function,
        "empty_rate": empty,
        "repetition": repetition,
    }


BASELINE = result("model", 1.0, content=0.5, function=0.6)


def test_rule_picks_the_largest_qualifying_content_drop():
    results = [
        BASELINE,
        result("all", 1.5, content=0.4),
        result("all", 2.0, content=0.2),
        result("all", 3.0, content=0.05, function=0.2),  # function tokens broken
        result("all", 4.0, content=0.01, empty=0.5),  # empty answers
        result("all", 5.0, content=0.01, repetition=0.6),  # repeats itself
        result("all", 6.0, content=0.01, repetition=None),  # nothing said
        result("first_half", 1.75, content=0.2),  # ties with all τ 2: smaller τ
        result("second_half", 1.75, content=0.2),  # ties again: listed later
    ]
    assert recommend(results, RULE) is results[7]


def test_rule_says_none_when_nothing_qualifies():
    results = [
        BASELINE,
        result("all", 2.0, content=0.1, function=0.29),
        result("all", 3.0, content=0.1, empty=0.25),
        result("all", 0.5, content=0.1),  # τ < 1 sharpens: never a teacher
    ]
    assert recommend(results, RULE) is None


def test_thresholds_come_from_the_rule():
    results = [BASELINE, result("all", 2.0, content=0.1, empty=0.25)]
    assert recommend(results, RULE | {"max_empty": 0.3}) is results[1]


@pytest.mark.parametrize("bad", [[0], [-1.5], ["hot"], [1], []])
def test_bad_temperatures_are_rejected(bad):
    with pytest.raises(ValueError, match="temperature"):
        check_temperatures(bad)


def test_temperatures_always_include_the_model():
    assert check_temperatures([2, 1.5, 2]) == [1.0, 1.5, 2.0]


def test_layer_sets_resolve_names_spans_and_lists():
    assert resolve_layer_sets(["all", "second_half", "last_third", [4, 1]], 30) == {
        "all": None,
        "second_half": list(range(15, 30)),
        "last_third": list(range(20, 30)),
        "[1, 4]": [1, 4],
    }


@pytest.mark.parametrize(
    "bad, message",
    [
        ([[0, 3]], "unknown layer index 3; the model has layers 0..2"),
        ([[-1]], "unknown layer index -1"),
        (["middle"], "unknown layer set 'middle'; allowed: all, first_half"),
        ([[]], "unknown layer set"),
        ([], "layer_sets is empty"),
    ],
)
def test_bad_layer_sets_are_rejected(bad, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        resolve_layer_sets(bad, 3)


def test_a_span_a_model_is_too_small_for_is_rejected():
    with pytest.raises(ValueError, match="first_third: a model of 2 layers has none"):
        resolve_layer_sets(["first_third"], 2)


def test_a_missing_split_file_is_named(tmp_path):
    (tmp_path / "forget10.jsonl").write_text("")
    with pytest.raises(FileNotFoundError, match="retain_perturbed.jsonl.*forget10"):
        split_files(tmp_path, ["forget10", "retain_perturbed"])


def test_spread_rows_covers_the_file():
    assert spread_rows(list(range(10)), 4) == [0, 2, 5, 7]
    assert spread_rows([1, 2], 5) == [1, 2]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Demo TOFU-format data and a tiny word-level Llama of 2 layers trained on nothing."""
    root = tmp_path_factory.mktemp("calibrate")
    generate(root / "data")
    rows = [r for f in sorted((root / "data").glob("*.jsonl")) for r in read_jsonl(f)]
    build_tiny_llama(root / "model", qa_texts(r for r in rows if "answer" in r))
    return root


def config(root, model="SmolLM2-135M-Instruct", **overrides):
    with initialize_config_dir(CONFIGS, version_base=None):
        return compose(
            "default",
            [
                f"model={model}",
                f"model.model_args.pretrained_model_name_or_path={root / 'model'}",
                f"model.tokenizer_args.pretrained_model_name_or_path={root / 'model'}",
                f"data_dir={root / 'data'}",
                f"out_dir={root / 'out'}",
                *(f"{k}={v}" for k, v in overrides.items()),
            ],
        )


@pytest.mark.parametrize(
    "overrides, error",
    [
        ({"temperatures": "[1,0]"}, ValueError),
        ({"layer_sets": "[all,[0,2]]"}, ValueError),  # the tiny model has layers 0, 1
        ({"retain_split": "retain_nowhere"}, ValueError),  # data_dir lacks the split
    ],
)
def test_bad_inputs_stop_before_the_model_loads(
    tiny_run, monkeypatch, overrides, error
):
    def load_model(*args):
        raise AssertionError("the model loaded before the inputs were checked")

    monkeypatch.setattr(calibrate, "load_model", load_model)
    monkeypatch.setattr(calibrate, "require_host", load_model)
    with pytest.raises(error):
        calibrate.calibrate(config(tiny_run, **overrides), "test")


def plain_encoder(tokenizer):
    """``encode`` with the host's phi-1_5 template, without the host."""

    def encode(question, answer, generate=False):
        prompt = tokenizer(PROMPT.format(question))["input_ids"]
        ids = prompt if generate else prompt + tokenizer(answer)["input_ids"]
        labels = torch.tensor(ids)
        labels[: len(prompt)] = -100
        return {"input_ids": torch.tensor(ids), "labels": labels}

    return encode


SPLITS = {"forget": "forget10", "retain": "retain_perturbed", "general": ["world"]}


def test_forget_answers_without_content_tokens_are_rejected():
    tokenizer = build_tokenizer(qa_texts([{"question": "Who ?", "answer": "the of ."}]))
    rows = {"forget10": [{"question": "Who ?", "answer": "the of ."}]}
    with pytest.raises(ValueError, match="forget10 answers have no content tokens"):
        prepare(plain_encoder(tokenizer), tokenizer, rows, SPLITS)


def test_sweep_and_report_without_the_host(tiny_run, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_run / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_run / "model")
    files = split_files(tiny_run / "data", ["forget10", "retain_perturbed"])
    rows = {s: read_jsonl(f)[:3] for s, f in files.items()}
    rows["world"] = read_jsonl(tiny_run / "data" / "world_facts_perturbed.jsonl")[:3]
    data = prepare(plain_encoder(tokenizer), tokenizer, rows, SPLITS)
    results = sweep(
        model,
        tokenizer,
        data,
        [1.0, 8.0],
        {"all": None},
        max_new_tokens=3,
        batch_size=2,
    )
    assert [r["temperature"] for r in results] == [1.0, 8.0]
    assert results[1]["content_prob"] != results[0]["content_prob"]
    assert all(len(r["answers"]) == 3 for r in results)
    meta = {"forget_split": "forget10", "retain_split": "retain_perturbed"}
    meta |= {"general_splits": ["world"], "rows": 3, "max_new_tokens": 3}
    meta |= {"cpu_seconds": 1.0, "wall_seconds": 1.0}
    write_report(tmp_path, "calibrate", results, recommend(results, RULE), RULE, meta)
    assert {p.name for p in tmp_path.iterdir()} == {
        "calibration.md",
        "calibration.json",
        "calibration.png",
    }


@pytest.mark.host
def test_a_small_run_writes_the_report_with_the_hosts_probability(host, tiny_run):
    cfg = config(
        tiny_run,
        model="phi-1_5",  # the host's plain "Question: ... Answer: ..." template
        rows=3,
        temperatures="[1,4]",
        layer_sets="[all,[0]]",
        max_new_tokens=4,
    )
    calibrate.calibrate(cfg, "python -m asu_plugin.workflows.calibrate test")
    out = tiny_run / "out"
    md = (out / "calibration.md").read_text()
    assert "`python -m asu_plugin.workflows.calibrate test`" in md
    assert "Recommended τ:" in md and "ties go to the smaller τ" in md
    assert (out / "calibration.png").stat().st_size > 0
    record = json.loads((out / "calibration.json").read_text())
    assert [(r["layer_set"], r["temperature"]) for r in record["results"]] == [
        ("model", 1.0),
        ("all", 4.0),
        ("[0]", 4.0),
    ]
    assert record["results"][0]["forget_prob"] == pytest.approx(
        host_forget_probability(host, cfg), rel=1e-5
    )


def host_forget_probability(host, cfg):
    """forget Q_A_Prob by the host's own preprocessing and ``evaluate_probability``."""
    model, tokenizer = load_model(host, cfg.model)
    preprocess = host_module(host, "data.utils").preprocess_chat_instance
    evaluate = host_module(host, "evals.metrics.utils").evaluate_probability
    rows = spread_rows(read_jsonl(Path(cfg.data_dir) / "forget10.jsonl"), cfg.rows)
    probs = []
    for row in rows:
        item = preprocess(
            tokenizer, cfg.model.template_args, [row["question"]], [row["answer"]], 512
        )
        batch = {k: v[None] for k, v in item.items()}
        probs += [e["prob"] for e in evaluate(model, batch)]
    return sum(probs) / len(probs)
