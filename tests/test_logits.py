"""The chunked output projection gives the full-logits losses and gradients, per family."""

import logging

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from asu_plugin import Reference, StartingModel, add_adapter
from asu_plugin.asu.smoothing import SmoothingSpec
from asu_plugin.core.inputs import label_positions
from asu_plugin.core.logits import PROJECTED, forward, identity, uniform_kl

from conftest import FAMILIES, LORA_ON_OUTPUT, frozen_copy, qa_batch, tiny_model

TAU = 2.3
# on top of conftest's families: tied output embeddings, and Gemma-2's final soft-cap
# (at 0.5 it bends these logits; its eager attention soft-cap cannot be smoothed)
EXTRA = {
    "llama-tied": ("LlamaConfig", {"tie_word_embeddings": True}),
    "gemma2": ("Gemma2Config", {"head_dim": 8, "final_logit_softcapping": 0.5}),
}
CHUNKS = (1, 4, 10_000)  # one position at a time, some, more than the batch holds


def model_of(family):
    config, extra = EXTRA.get(family, FAMILIES.get(family, (family, {})))
    return tiny_model(config, **extra)


def student_and_start(family, kind, chunk_size):
    """The student (train mode) and its start: a frozen copy, or the LoRA student's base."""
    if kind == "lora":
        student = add_adapter(model_of(family), LORA_ON_OUTPUT).train()
        return student, student, True
    student = model_of(family).train()
    start = frozen_copy(student)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # the student has moved from its start
        for p in student.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return student, start, False


def asu_forget(student, start, adapter_base, batch, chunk_size):
    reference = Reference(start, TAU, adapter_base=adapter_base, chunk_size=chunk_size)
    return reference.kl(student, batch, smoothed=True)[0]


def retain_kl(student, start, adapter_base, batch, chunk_size):
    return StartingModel(start, adapter_base, chunk_size).kl(student, batch)[0]


def dareu_terms(student, start, adapter_base, batch, chunk_size):
    kl, logprobs, _ = StartingModel(start, adapter_base, chunk_size).kl_and_logprobs(
        student, batch
    )
    return kl + 0.1 * logprobs.sum()


def me_uniform(student, start, adapter_base, batch, chunk_size):
    return uniform_kl(
        forward(student, batch, chunk_size),
        label_positions(batch["labels"]),
        chunk_size,
    )


TERMS = {
    "asu_forget": asu_forget,
    "retain_kl": retain_kl,
    "dareu": dareu_terms,
    "me": me_uniform,
}


def loss_and_grads(family, kind, term, chunk_size):
    student, start, adapter_base = student_and_start(family, kind, chunk_size)
    loss = TERMS[term](student, start, adapter_base, qa_batch(seed=1), chunk_size)
    loss.backward()
    grads = {n: p.grad for n, p in student.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("kind", ["full", "lora"])
@pytest.mark.parametrize("term", list(TERMS))
@pytest.mark.parametrize("family", [*FAMILIES, *EXTRA])
def test_chunked_loss_and_gradients_equal_the_full_logits_path(family, term, kind):
    if term == "asu_forget":
        try:
            SmoothingSpec.check(model_of(family), TAU)
        except ValueError as error:
            pytest.skip(f"{family} cannot be smoothed: {error}")
    full_loss, full_grads = loss_and_grads(family, kind, term, None)
    assert full_loss.abs() > 1e-4  # a term that could differ
    assert full_grads and all(g.abs().sum() > 0 for g in full_grads.values())
    for chunk_size in CHUNKS:
        loss, grads = loss_and_grads(family, kind, term, chunk_size)
        torch.testing.assert_close(loss, full_loss, rtol=1e-5, atol=1e-7)
        assert grads.keys() == full_grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(
                grad, full_grads[name], rtol=1e-5, atol=1e-6, msg=name
            )


@pytest.mark.parametrize("family", [*FAMILIES, *EXTRA])
def test_every_tested_family_takes_the_chunked_path(family):
    model = model_of(family)
    positions = forward(model, qa_batch(), chunk_size=8)
    assert model.config.model_type in PROJECTED
    assert positions.project is not identity
    assert positions.states.shape[-1] == model.config.hidden_size
    assert positions.outputs.logits.shape[1] == 1  # the model projected one position


def test_another_family_takes_the_full_logits_and_says_so_once(caplog):
    config = GPT2Config(vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    model = GPT2LMHeadModel(config).eval()
    with caplog.at_level(logging.WARNING, logger="asu_plugin.core.logits"):
        first = forward(model, qa_batch(), chunk_size=8)
        forward(model, qa_batch(), chunk_size=8)
    assert first.project is identity and first.states.shape[-1] == 96
    told = [
        r for r in caplog.records if "gpt2 computes its losses from full" in r.message
    ]
    assert len(told) == 1


def test_the_full_logits_path_is_the_model_s_own_logits():
    model = tiny_model("llama").eval()
    batch = qa_batch()
    with torch.no_grad():
        expected = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits
        positions = forward(model, batch, chunk_size=None)
        torch.testing.assert_close(positions.states, expected)
        chunked = forward(model, batch, chunk_size=8)
        torch.testing.assert_close(chunked.project(chunked.states), expected)


def test_the_docs_list_the_families_that_take_the_chunked_path():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "memory.md").read_text()
    table = text.split("## Which path each model family takes")[1].split("\n\n")[1]
    rows = [line.split("|")[2].strip(" `") for line in table.splitlines()[2:]]
    assert sorted(rows) == sorted(PROJECTED)
