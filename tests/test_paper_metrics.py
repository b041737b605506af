"""The ASU paper's FE / MU pieces as open-unlearning metrics, on fixed texts and tiny
local NLI / sentence-embedding models, against independent computations."""

import math
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertForSequenceClassification

from conftest import NLI_LABELS, build_tiny_bert

pytestmark = pytest.mark.host
TEXTS = [
    "Basil Mahfouz Al-Kuwaiti was born in Kuwait City",
    "He was born in Kuwait City in 1932",
    "the the the the",
    "I do not know",
    "Kuwait City",
    "His father was a florist and his mother a game developer",
]


@pytest.fixture(scope="module")
def paper(host):
    sys.path.insert(0, str(host / "src"))
    import evals.metrics

    from asu_plugin.registration import register_loaded

    register_loaded()
    from asu_plugin.metrics import paper

    yield SimpleNamespace(module=paper, registry=evals.metrics.METRICS_REGISTRY)
    sys.path.remove(str(host / "src"))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper_models")
    return SimpleNamespace(
        encoder=build_tiny_bert(root / "encoder", TEXTS),
        nli=build_tiny_bert(root / "nli", TEXTS, NLI_LABELS),
        always=build_tiny_bert(
            root / "always", TEXTS, NLI_LABELS, bias=[5.0, 0.0, 0.0]
        ),
        never=build_tiny_bert(root / "never", TEXTS, NLI_LABELS, bias=[0.0, 0.0, 5.0]),
    )


CPU = SimpleNamespace(
    device=torch.device("cpu")
)  # the evaluated model: only its device


def answers(rouge=None):
    """The ROUGE pre-compute's records: generation, ground truth, ROUGE-L recall."""
    pairs = list(zip(TEXTS, TEXTS[1:] + TEXTS[:1], strict=True))
    rouge = rouge or [0.5] * len(pairs)
    records = {
        str(i): {"generation": g, "ground_truth": t, "rougeL_recall": r}
        for i, ((g, t), r) in enumerate(zip(pairs, rouge, strict=True))
    }
    return {"text": {"value_by_index": records}}


def run(metric, **kwargs):
    return metric._metric_fn(CPU, **kwargs)


def test_the_metrics_are_in_the_hosts_registry(paper):
    for name in (
        "token_entropy",
        "cosine_similarity",
        "entailment_rate",
        "forget_efficacy",
        "forget_efficacy_no_nli",
    ):
        assert paper.registry[name] is getattr(paper.module, name)


@pytest.mark.parametrize(
    "tokens, expected",
    [
        ([], 0.0),  # too short: 0, the release's rule
        (["a"], 0.0),
        (["a", "a", "a"], 0.0),
        (["a", "b", "c", "d"], 1.0),
        (["a", "a", "b", "c"], (1.5) / 2),  # H = 1.5 bits over log2(4)
    ],
)
def test_normalised_token_entropy_by_hand(paper, tokens, expected):
    assert paper.module.normalised_token_entropy(tokens) == pytest.approx(expected)


def test_token_entropy_metric_uses_the_models_tokenizer(paper, models):
    tokenizer = AutoTokenizer.from_pretrained(models.encoder)
    result = run(paper.module.token_entropy, pre_compute=answers(), tokenizer=tokenizer)
    expected = []
    for text in TEXTS:
        counts = np.unique(tokenizer.tokenize(text), return_counts=True)[1]
        n = counts.sum()
        h = -(counts / n * np.log(counts / n)).sum() / math.log(n) if n > 1 else 0.0
        expected.append(h)  # natural logs on both: the base cancels
    by_index = [result["value_by_index"][str(i)]["score"] for i in range(len(TEXTS))]
    assert by_index == pytest.approx(expected)
    assert result["agg_value"] == pytest.approx(np.mean(expected))
    assert by_index[2] == 0.0  # "the the the the"


def test_cosine_similarity_against_one_text_at_a_time(paper, models):
    from transformers import AutoModel

    result = run(
        paper.module.cosine_similarity,
        pre_compute=answers(),
        embedding_model=models.encoder,
        batch_size=4,  # padded batches, one part-full
    )
    tokenizer = AutoTokenizer.from_pretrained(models.encoder)
    encoder = AutoModel.from_pretrained(models.encoder).eval()

    def embed(text):
        with torch.no_grad():
            hidden = encoder(**tokenizer(text, return_tensors="pt")).last_hidden_state
        return hidden[0].mean(0).numpy()

    records = answers()["text"]["value_by_index"]
    for index, record in records.items():
        a, b = embed(record["generation"]), embed(record["ground_truth"])
        expected = max(0.0, float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
        got = result["value_by_index"][index]["score"]
        assert got == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("premise", ["generation", "ground_truth"])
def test_entailment_against_one_pair_at_a_time(paper, models, premise):
    rouge = [0.5, 0.05, 0.1, 0.9, 0.3, 0.0]
    result = run(
        paper.module.entailment_rate,
        pre_compute=answers(rouge),
        nli_model=models.nli,
        premise=premise,
        batch_size=4,
    )
    tokenizer = AutoTokenizer.from_pretrained(models.nli)
    nli = BertForSequenceClassification.from_pretrained(models.nli).eval()
    other = "ground_truth" if premise == "generation" else "generation"
    expected, labels = {}, []
    for index, record in answers(rouge)["text"]["value_by_index"].items():
        with torch.no_grad():
            logits = nli(
                **tokenizer(record[premise], record[other], return_tensors="pt")
            )
        label = NLI_LABELS[int(logits.logits.argmax())]
        labels.append(label)
        expected[index] = float(
            label == "entailment" and record["rougeL_recall"] >= 0.1
        )
    got = {i: v["score"] for i, v in result["value_by_index"].items()}
    assert got == expected
    assert result["agg_value"] == pytest.approx(np.mean(list(expected.values())))


def test_entailment_needs_rouge_l_recall_of_at_least_0_1(paper, models):
    rouge = [0.5, 0.05, 0.1, 0.9, 0.0999, 0.0]
    kwargs = dict(pre_compute=answers(rouge), premise="ground_truth", batch_size=32)
    always = run(paper.module.entailment_rate, nli_model=models.always, **kwargs)
    never = run(paper.module.entailment_rate, nli_model=models.never, **kwargs)
    assert always["agg_value"] == pytest.approx(3 / 6)  # 0.5, 0.1, 0.9
    assert never["agg_value"] == 0.0


def test_entailment_needs_an_entailment_label(paper, tmp_path):
    path = build_tiny_bert(tmp_path / "nli", TEXTS, {0: "positive", 1: "negative"})
    with pytest.raises(ValueError, match="no 'entailment' label.*negative"):
        run(
            paper.module.entailment_rate,
            pre_compute=answers(),
            nli_model=path,
            premise="generation",
        )


@pytest.mark.parametrize(
    "metric, key",
    [("entailment_rate", "nli_model"), ("cosine_similarity", "embedding_model")],
)
def test_a_model_that_cannot_load_is_named(paper, tmp_path, metric, key):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(OSError, match=f"cannot load the .* model '{missing}'.*{key}"):
        run(
            getattr(paper.module, metric),
            pre_compute=answers(),
            premise="generation",
            **{key: missing},
        )


def agg(**values):
    return {name: {"agg_value": value} for name, value in values.items()}


def test_forget_efficacy_is_the_harmonic_mean_of_the_turned_terms(paper):
    terms = dict(
        rouge=0.4, probability=0.3, truth_ratio=0.6, token_entropy=0.9, entailment=0.2
    )
    result = run(paper.module.forget_efficacy, pre_compute=agg(**terms))
    turned = [1 - 0.4, 1 - 0.3, 0.6, 0.9, 1 - 0.2]
    assert result["agg_value"] == pytest.approx(5 / sum(1 / v for v in turned))
    no_nli = agg(**{k: v for k, v in terms.items() if k != "entailment"})
    result = run(paper.module.forget_efficacy_no_nli, pre_compute=no_nli)
    assert result["agg_value"] == pytest.approx(4 / sum(1 / v for v in turned[:4]))
    zero = run(paper.module.forget_efficacy, pre_compute=agg(**{**terms, "rouge": 1.0}))
    assert zero["agg_value"] == 0.0  # one term at 0: the harmonic mean is 0


def test_forget_efficacy_never_reports_without_its_nli_term(paper):
    four = agg(rouge=0.4, probability=0.3, truth_ratio=0.6, token_entropy=0.9)
    with pytest.raises(ValueError, match="entailment"):
        run(paper.module.forget_efficacy, pre_compute=four)
    with pytest.raises(ValueError, match="access keys"):
        run(
            paper.module.forget_efficacy_no_nli,
            pre_compute={**four, **agg(entailment=0.1)},
        )
