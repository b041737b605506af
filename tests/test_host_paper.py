"""open-unlearning's own src/train.py and src/eval.py with the paper's baselines and
metrics: a tiny local Llama, the demo's generated authors in TOFU's format, and tiny local
NLI and sentence-embedding models."""

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from asu_plugin.workflows.builders.authors import generate
from asu_plugin.workflows.builders.tiny import build_tiny_llama, qa_texts
from asu_plugin.workflows.builders.tofu_format import (
    REFUSALS,
    read_jsonl,
    write_refusals,
)
from asu_plugin.workflows.run.host import (
    NO_EVAL,
    device_overrides,
    link_tofu,
    model_overrides,
    run_host,
)

from conftest import HOST_TOFU_METRICS, NLI_LABELS, build_tiny_bert

pytestmark = pytest.mark.host
SPLITS = ["forget_split=forget10", "holdout_split=holdout10"]


def harmonic_mean(values):
    """By hand; 0 when a part is 0, as scipy's hmean (the host's) has it."""
    if min(values) == 0:
        return 0.0
    return len(values) / sum(1 / v for v in values)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("host_paper")
    generate(run_dir / "data")
    link_tofu(run_dir, run_dir / "data")
    write_refusals(run_dir / "refusals.jsonl")
    return run_dir


@pytest.fixture(scope="module")
def tiny(run_dir):
    texts = qa_texts(read_jsonl(run_dir / "data" / "full.jsonl")) + list(REFUSALS)
    return build_tiny_llama(run_dir / "tiny", texts)


def check(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


def unlearn(host, run_dir, tiny, experiment, task, extra=()):
    overrides = [
        "--config-name=unlearn.yaml",
        f"experiment=unlearn/tofu/{experiment}",
        f"task_name={task}",
        *model_overrides(tiny),
        *SPLITS,
        "retain_split=retain90",
        *device_overrides(),
        *NO_EVAL,
        "trainer.args.per_device_train_batch_size=4",
        "trainer.args.gradient_accumulation_steps=1",
        "+trainer.args.max_steps=4",
        "trainer.args.learning_rate=1e-3",
        f"paths.root_dir={run_dir}",
        *extra,
    ]
    return run_host(host, "train.py", overrides, run_dir, capture_output=True)


def moved(run_dir, tiny, task):
    before = AutoModelForCausalLM.from_pretrained(tiny).state_dict()
    after = AutoModelForCausalLM.from_pretrained(run_dir / "saves" / "unlearn" / task)
    return any(not torch.equal(v, before[k]) for k, v in after.state_dict().items())


def test_me_gd_trains_through_the_host(host, run_dir, tiny):
    check(unlearn(host, run_dir, tiny, "me", "tiny_ME_GD"))
    assert moved(run_dir, tiny, "tiny_ME_GD")


def test_idk_ap_trains_through_the_host_on_our_refusals(host, run_dir, tiny):
    idk = f"idk_path={run_dir / 'refusals.jsonl'}"
    check(unlearn(host, run_dir, tiny, "idk_ap", "tiny_IDK_AP", [idk]))
    assert moved(run_dir, tiny, "tiny_IDK_AP")


def test_idk_without_its_refusal_file_says_so(host, run_dir, tiny):
    result = unlearn(host, run_dir, tiny, "idk_ap", "tiny_IDK_nofile")
    assert result.returncode != 0
    assert "idk_path './data/idk.jsonl'" in result.stderr
    assert "setup_data.py --idk" in result.stderr


@pytest.fixture(scope="module")
def scorers(run_dir):
    texts = qa_texts(read_jsonl(run_dir / "data" / "full.jsonl"))
    return {
        "nli": build_tiny_bert(run_dir / "nli", texts, NLI_LABELS),
        "encoder": build_tiny_bert(run_dir / "encoder", texts),
    }


def evaluate(host, run_dir, tiny, name, extra):
    out = run_dir / "evals" / name
    overrides = [
        "experiment=eval/tofu/default",
        f"task_name={name}",
        *model_overrides(tiny),
        *SPLITS,
        "model.model_args.device_map=cpu",
        f"paths.output_dir={out}",
        *(f"~eval.tofu.metrics.{metric}" for metric in HOST_TOFU_METRICS),
        *extra,
    ]
    result = run_host(host, "eval.py", overrides, run_dir, capture_output=True)
    return result, out


def test_eval_reports_fe_and_mu_from_their_parts(host, run_dir, tiny, scorers):
    result, out = evaluate(
        host,
        run_dir,
        tiny,
        "paper",
        [
            "eval=tofu_paper",
            f"eval.tofu.nli_model={scorers['nli']}",
            f"eval.tofu.embedding_model={scorers['encoder']}",
        ],
    )
    check(result)
    summary = json.loads((out / "TOFU_SUMMARY.json").read_text())
    logs = json.loads((out / "TOFU_EVAL.json").read_text())
    assert set(summary) == {"forget_efficacy", "paper_model_utility"}

    def value(name):
        return logs[name]["agg_value"]

    fe_terms = [
        1 - value("forget_Q_A_ROUGE"),
        1 - value("forget_Q_A_Prob"),
        value("forget_truth_ratio"),
        value("forget_token_entropy"),
        1 - value("forget_entailment"),
    ]
    assert summary["forget_efficacy"] == pytest.approx(harmonic_mean(fe_terms))
    mu_terms = [
        value(f"{split}_{metric}")
        for split, prob in (
            ("retain", "Q_A_Prob"),
            ("ra", "Q_A_Prob_normalised"),
            ("wf", "Q_A_Prob_normalised"),
        )
        for metric in (
            prob,
            "Q_A_ROUGE",
            "Truth_Ratio",
            "token_entropy",
            "cosine_similarity",
            "entailment",
        )
    ]
    assert summary["paper_model_utility"] == pytest.approx(harmonic_mean(mu_terms))

    # the token entropy of the logged greedy answers, recomputed here
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    generations = logs["forget_Q_A_ROUGE"]["value_by_index"]
    entropies = []
    for record in generations.values():
        tokens = tokenizer.tokenize(record["generation"])
        counts = np.unique(tokens, return_counts=True)[1] / max(len(tokens), 1)
        h = -(counts * np.log2(counts)).sum()
        entropies.append(h / np.log2(len(tokens)) if len(tokens) > 1 else 0.0)
    assert value("forget_token_entropy") == pytest.approx(np.mean(entropies))
    assert len(logs["forget_entailment"]["value_by_index"]) == len(generations)


def test_eval_without_nli_reports_under_other_names(host, run_dir, tiny, scorers):
    result, out = evaluate(
        host,
        run_dir,
        tiny,
        "paper_no_nli",
        ["eval=tofu_paper_no_nli", f"eval.tofu.embedding_model={scorers['encoder']}"],
    )
    check(result)
    summary = json.loads((out / "TOFU_SUMMARY.json").read_text())
    assert set(summary) == {"forget_efficacy_no_nli", "paper_model_utility_no_nli"}
    logs = json.loads((out / "TOFU_EVAL.json").read_text())
    assert not any("entailment" in name for name in logs)


def test_eval_with_an_nli_model_it_cannot_load_names_it(host, run_dir, tiny, scorers):
    missing = run_dir / "no-such-nli"
    result, _ = evaluate(
        host,
        run_dir,
        tiny,
        "paper_missing_nli",
        [
            "eval=tofu_paper",
            f"eval.tofu.nli_model={missing}",
            f"eval.tofu.embedding_model={scorers['encoder']}",
        ],
    )
    assert result.returncode != 0
    assert f"cannot load the NLI model '{missing}'" in result.stderr
