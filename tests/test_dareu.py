"""DareU's parts without the host: the owner classifier's reward, rollouts, PPO math."""

import json

import pytest
import torch

from asu_plugin.core.inputs import cut_at_stop, left_pad, pack, prompt_ids
from asu_plugin.core.logits import Positions, identity, kl_and_logprobs
from asu_plugin.dareu.classifier import OTHER, READS, OwnerClassifier
from asu_plugin.dareu.rollout import clipped_surrogate, group_advantages
from asu_plugin.workflows.builders.tiny import build_tokenizer

from conftest import build_tiny_classifier, qa_batch, tiny_model

TEXTS = [
    "Question: Where was Aldo Brandt born?\nAnswer: Aldo Brandt was born in Oslo.",
    "Question: Who wrote Hamlet?\nAnswer: William Shakespeare",
    "Question: Which genre does Lenka Falk write?\nAnswer: romance",
]
LABELS = ["author_0", "author_1", "author_2", OTHER]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(TEXTS)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tokenizer):
    out = tmp_path_factory.mktemp("classifier")
    return build_tiny_classifier(out, tokenizer, LABELS, ["author_1", "author_2"])


def test_reward_is_minus_the_forget_owners_probability_from_the_logits(folder):
    classifier = OwnerClassifier(folder).load()
    assert classifier.owners == ["author_1", "author_2"]
    expected = []
    for text in TEXTS:  # one unpadded text at a time, softmax by hand
        ids = classifier.tokenizer(text, return_tensors="pt").input_ids
        with torch.no_grad():
            logits = classifier.model(input_ids=ids).logits[0].double()
        probs = logits.exp() / logits.exp().sum()
        expected.append(-(probs[1] + probs[2]).item())
    rewards = classifier.rewards(TEXTS)  # padded batch
    torch.testing.assert_close(
        rewards.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=0
    )
    assert ((rewards <= 0) & (rewards >= -1)).all()
    named = OwnerClassifier(folder, owners=["author_0"]).load()
    assert not torch.allclose(named.rewards(TEXTS), rewards)


@pytest.mark.parametrize(
    "owners, forget_owners, message",
    [
        (["author_7"], None, r"unknown owners \['author_7'\]"),
        ([OTHER], None, r"unknown owners \['other'\]"),
        ([], None, "owners is empty"),
        (None, None, "records no forget_owners"),
        (None, ["author_9"], r"unknown owners \['author_9'\] in its recorded"),
    ],
)
def test_bad_owners_are_refused(tmp_path, tokenizer, owners, forget_owners, message):
    folder = build_tiny_classifier(tmp_path, tokenizer, LABELS, forget_owners)
    with pytest.raises(ValueError, match=message):
        OwnerClassifier(folder, owners)


def test_missing_classifier_folder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no owner classifier at"):
        OwnerClassifier(tmp_path / "nowhere")


def test_tokenizer_that_cannot_read_the_text_is_refused(folder):
    classifier = OwnerClassifier(folder)
    classifier.check_reads(TEXTS)  # its own words
    with pytest.raises(ValueError, match="cannot read the policy's text"):
        classifier.check_reads(["Quelle est la capitale du Pérou ? Lima, bien sûr."])


def test_prompt_is_the_part_before_the_first_label():
    batch = qa_batch()
    prompts = prompt_ids(batch)
    assert [len(p) for p in prompts] == [6, 6, 6]
    assert all(
        torch.equal(p, row[:6])
        for p, row in zip(prompts, batch["input_ids"], strict=True)
    )
    batch["labels"][1] = -100
    with pytest.raises(ValueError, match="no label tokens"):
        prompt_ids(batch)


def test_left_padded_generation_input_and_packed_responses():
    prompts = [torch.tensor([5, 6, 7]), torch.tensor([8])]
    input_ids, mask = left_pad(prompts, pad_id=0)
    assert input_ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    generated = torch.tensor([[9, 2, 0, 0], [10, 11, 12, 13]])
    responses = cut_at_stop(generated, stop_ids={2})
    assert [r.tolist() for r in responses] == [[9, 2], [10, 11, 12, 13]]
    packed = pack(prompts, responses, pad_id=0)
    assert packed["input_ids"].tolist() == [[5, 6, 7, 9, 2], [8, 10, 11, 12, 13]]
    assert packed["labels"].tolist() == [
        [-100, -100, -100, 9, 2],
        [-100, 10, 11, 12, 13],
    ]
    assert packed["attention_mask"].tolist() == [[1] * 5, [1] * 5]


def test_group_advantages_are_standardised_within_each_prompt():
    rewards = torch.tensor([-0.9, -0.1, -0.5, -0.5, 0.0, -1.0, -0.2, -0.4])
    advantages = group_advantages(rewards, 4).view(2, 4)
    torch.testing.assert_close(advantages.mean(-1), torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        advantages.std(-1, unbiased=False), torch.ones(2), atol=1e-3, rtol=0
    )
    equal = group_advantages(torch.full((4,), -0.3), 4)
    assert torch.equal(equal, torch.zeros(4))  # no preference, no push


def sequence_mean(values, labels):
    """Mean over each row's label tokens, then over rows (every row has some)."""
    mask = (labels[:, 1:] != -100).float()
    return ((values * mask).sum(-1) / mask.sum(-1)).mean()


def test_token_logprobs_read_the_labelled_next_tokens():
    model, batch = tiny_model("llama"), qa_batch()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"]).logits
    full = Positions(logits, identity, None)
    logprobs = kl_and_logprobs(full, full, batch["labels"])[1]
    row, t = 0, 8  # position 8 predicts token 9, a label of the unpadded row 0
    expected = logits[row, t].log_softmax(-1)[batch["input_ids"][row, t + 1]]
    torch.testing.assert_close(logprobs[row, t], expected)
    assert (logprobs[batch["labels"][:, 1:] == -100] == 0).all()


def test_clipped_objective_equals_the_unclipped_one_at_ratio_1():
    batch = qa_batch()
    logprobs = -torch.rand(batch["labels"].shape[0], batch["labels"].shape[1] - 1)
    advantages = torch.tensor([1.5, -0.5, -1.0])
    objective, clip_share = clipped_surrogate(
        logprobs, logprobs, advantages, batch["labels"], clip=0.2
    )
    unclipped = sequence_mean(advantages[:, None].expand_as(logprobs), batch["labels"])
    torch.testing.assert_close(objective, unclipped)
    assert clip_share == 0
    # far from 1 the clip binds on the side that would overshoot
    moved, clip_share = clipped_surrogate(
        logprobs + 1.0, logprobs, advantages, batch["labels"], clip=0.2
    )
    ratio_e = sequence_mean(
        (advantages[:, None] * torch.tensor([[1.2], [torch.e], [torch.e]])).expand_as(
            logprobs
        ),
        batch["labels"],
    )
    torch.testing.assert_close(moved, ratio_e)
    assert 0 < clip_share < 1


@pytest.mark.parametrize("reads", READS)
def test_the_classifier_reads_what_its_config_says(tmp_path, tokenizer, reads):
    folder = build_tiny_classifier(tmp_path, tokenizer, LABELS, ["author_1"])
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "reads": reads}))
    prompt, response = (torch.tensor(tokenizer.encode(t)) for t in ("who wrote", " it"))
    texts = OwnerClassifier(folder).texts(tokenizer, [prompt], [response])
    whole = tokenizer.decode(torch.cat([prompt, response]), skip_special_tokens=True)
    alone = tokenizer.decode(response, skip_special_tokens=True).strip()
    assert texts == [whole if reads == "question_and_response" else alone]


def test_a_classifier_reading_something_else_is_refused(tmp_path, tokenizer):
    folder = build_tiny_classifier(tmp_path, tokenizer, LABELS, ["author_1"])
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "reads": "question"}))
    with pytest.raises(ValueError, match="reads 'question'; known"):
        OwnerClassifier(folder)
