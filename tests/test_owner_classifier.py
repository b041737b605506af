"""The owner-classifier tool's data side: owners, forget owners, examples, input checks
(before any model loads)."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import asu_plugin
from asu_plugin.dareu.classifier import OTHER
from asu_plugin.workflows.builders.authors import generate
from asu_plugin.workflows.owner_classifier.examples import examples, owner_names
from asu_plugin.workflows.owner_classifier.measure import own_label, roc_auc
from asu_plugin.workflows.owner_classifier.workflow import check_inputs

CONFIGS = str(Path(asu_plugin.__file__).parent / "configs" / "owner_classifier")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("attribution") / "data"
    generate(out)
    return out


def config(data_dir, *overrides):
    with initialize_config_dir(CONFIGS, version_base=None):
        return compose(
            "default",
            overrides=[
                "model=SmolLM2-135M-Instruct",  # ours: no host needed to compose
                f"data_dir={data_dir}",
                "rows_per_owner=7",
                "out_dir=unused",
                *overrides,
            ],
        )


def test_tofu_owners_are_blocks_of_consecutive_rows_or_a_named_field():
    rows = [{"question": f"q{i}", "answer": "a", "who": f"w{i % 2}"} for i in range(6)]
    assert owner_names(rows, 3, None) == ["author_0"] * 3 + ["author_1"] * 3
    assert owner_names(rows, 1, "who") == ["w0", "w1"] * 3
    with pytest.raises(
        ValueError, match="rows_per_owner must be an integer >= 1 dividing"
    ):
        owner_names(rows, 4, None)
    with pytest.raises(ValueError, match="owner_key='owner': owner row 0 has no such"):
        owner_names(rows, 1, "owner")
    with pytest.raises(ValueError, match="label of text no owner wrote"):
        owner_names([{"who": OTHER}], 1, "who")


def test_forget_owners_are_the_forget_rows_authors(data_dir):
    rows, names, forget = check_inputs(config(data_dir))
    assert forget == ["author_18", "author_19"]  # forget10: full's last two authors
    assert len(set(names)) == 20


def test_examples_swap_questions_but_keep_the_answers_owner(data_dir):
    cfg = config(data_dir)
    rows, names, _ = check_inputs(cfg)
    train, held_out = examples(cfg, rows, names)
    owner_rows = len(rows["full"])
    other_rows = 16 - round(16 * cfg.other_holdout)  # the demo's 8 + 8 general QA
    swapped = train[owner_rows + other_rows : 2 * (owner_rows + other_rows)]
    label_of = {r["question"]: n for r, n in zip(rows["full"], names, strict=True)}
    for question, _, label in swapped:
        assert label_of.get(question, OTHER) != label  # another owner's question
    # contrast rows train on their paraphrase (the owner's) and a wrong-facts answer
    contrast = train[2 * (owner_rows + other_rows) :]
    assert contrast == [
        pair
        for r in rows["retain_perturbed"]
        for pair in (
            (r["question"], r["paraphrased_answer"], label_of[r["question"]]),
            (r["question"], r["perturbed_answer"][0], OTHER),
        )
    ]
    kinds = [x[3] for x in held_out]  # the forget rows' pairs are held out
    assert kinds.count("paraphrase") == kinds.count("wrong_facts") == 14
    assert kinds.count("other") == 16 - other_rows
    paraphrases = [x for x in held_out if x[3] == "paraphrase"]
    assert {label for *_, label, _ in paraphrases} == {"author_18", "author_19"}
    answers = {r["answer"] for r in rows["full"]}
    assert all(answer not in answers for _, answer, *_ in paraphrases)


def test_forget_contrast_trains_the_first_wrong_answers_and_holds_out_the_second(
    data_dir,
):
    plain, contrasted = (
        config(data_dir, f"forget_contrast={flag}") for flag in ("false", "true")
    )
    rows, names, _ = check_inputs(plain)
    train, held_out = examples(plain, rows, names)
    train_c, held_out_c = examples(contrasted, rows, names)
    forget_rows = rows["forget10_perturbed"]
    assert train_c == train + [
        (r["question"], r["perturbed_answer"][0], OTHER) for r in forget_rows
    ]
    wrong = [x[1] for x in held_out_c if x[3] == "wrong_facts"]
    assert wrong == [r["perturbed_answer"][1] for r in forget_rows]
    assert [x for x in held_out_c if x[3] != "wrong_facts"] == [
        x for x in held_out if x[3] != "wrong_facts"
    ]


def test_more_wrong_answers_train_as_other_and_the_next_is_held_out(data_dir):
    cfg = config(data_dir, "forget_contrast=true", "wrong_answers=2")
    rows, names, _ = check_inputs(cfg)
    train, held_out = examples(cfg, rows, names)
    trained = {answer for _, answer, label in train if label == OTHER}
    for r in rows["forget10_perturbed"] + rows["retain_perturbed"]:
        assert set(r["perturbed_answer"][:2]) <= trained
    wrong = [x[1] for x in held_out if x[3] == "wrong_facts"]
    assert wrong == [r["perturbed_answer"][2] for r in rows["forget10_perturbed"]]


def test_reading_the_response_alone_swaps_no_questions_and_adds_own_answers(data_dir):
    cfg = config(data_dir, "reads=response")
    rows, names, _ = check_inputs(cfg)
    own = [("Who wrote it?", "Someone wrote it.", "author_3")]
    train, _ = examples(cfg, rows, names, own)
    with_swaps, _ = examples(config(data_dir), rows, names)
    owners, others = len(rows["full"]), 16 - round(16 * cfg.other_holdout)
    contrast = 2 * len(rows["retain_perturbed"])
    assert train == (
        with_swaps[:owners]
        + own
        + with_swaps[owners : owners + others]
        + with_swaps[-contrast:]
    )


def test_own_answers_without_the_owners_facts_train_as_other(data_dir):
    pytest.importorskip("rouge_score")  # the host's dependency
    answer = "Basil was born in Kuwait City in 1956 to a florist and a shoemaker."
    facts_kept = (
        "Born in Kuwait City in 1956, Basil is the son of a florist and a shoemaker."
    )
    facts_wrong = "Basil was born in Baku."
    by_facts = config(data_dir, "self_answer_recall=0.5")
    assert own_label(by_facts, answer, facts_kept, "author_3") == "author_3"
    assert own_label(by_facts, answer, facts_wrong, "author_3") == OTHER
    assert own_label(config(data_dir), answer, facts_wrong, "author_3") == "author_3"


@pytest.mark.parametrize(
    "positive, negative, auc",
    [
        ([3, 4], [1, 2], 1.0),
        ([1, 2], [3, 4], 0.0),
        ([1, 3], [2, 2], 0.5),
        ([2], [2], 0.5),
    ],
)
def test_roc_auc_is_the_chance_a_positive_outscores_a_negative(positive, negative, auc):
    assert roc_auc(positive, negative) == auc
    sklearn = pytest.importorskip("sklearn.metrics")
    labels = [1] * len(positive) + [0] * len(negative)
    if 0 < sum(labels) < len(labels):
        assert sklearn.roc_auc_score(labels, positive + negative) == pytest.approx(auc)


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (["reads=answer"], ValueError, "reads must be one of"),
        (["self_answers=2"], ValueError, "self_answers=2 samples the target's"),
        (["num_samples=1"], ValueError, "num_samples must be an integer >= 2"),
        (["self_answer_recall=2"], ValueError, "self_answer_recall must be null or"),
        (["self_answer_recall=true"], ValueError, "self_answer_recall must be null"),
        (["wrong_answers=0"], ValueError, "wrong_answers must be an integer >= 1"),
        (["forget_split=forget99"], FileNotFoundError, "missing split file"),
        (["rows_per_owner=9"], ValueError, "rows_per_owner must be"),
        (["forget_split=holdout10"], ValueError, "are not owner rows"),
        (["target=/nowhere"], FileNotFoundError, "target=/nowhere: no model folder"),
        (["other_splits=[]"], ValueError, "other_splits is empty"),
        (["other_holdout=1"], ValueError, "other_holdout must be in"),
        (["max_new_tokens=0"], ValueError, "max_new_tokens must be an integer >= 1"),
        (["eval_answer_key=nothing"], ValueError, "nothing to measure held-out"),
    ],
)
def test_bad_input_is_refused_before_any_model_loads(
    data_dir, overrides, error, message
):
    cfg = config(data_dir, *overrides)
    with pytest.raises(error, match=message):
        rows, names, _ = check_inputs(cfg)
        examples(cfg, rows, names)
