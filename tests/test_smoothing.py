"""Attention smoothing against an explicit softmax(q·kᵀ/(τ√d)) reference."""

import re
from pathlib import Path
from unittest import mock

import pytest
import torch
import transformers
from omegaconf import OmegaConf
from packaging.version import Version

from asu_plugin import AttentionSmoothing, smooth_attention
from asu_plugin.asu.models import AttentionSmoothedForCausalLM
from asu_plugin.asu.smoothing import SmoothingSpec
from asu_plugin.workflows.run.tables import markdown_table

from conftest import FAMILIES, TINY, qa_batch, tiny_model

TAU = 2.3


def reference_logits(family, inputs, temperature, layers=None):
    """Eager attention whose softmax is replaced by softmax(scores / τ) per layer."""
    model = tiny_model(family, "eager")
    softmax = torch.nn.functional.softmax
    calls = []

    def tempered_softmax(scores, *args, **kwargs):
        layer = len(calls)
        calls.append(layer)
        tau = temperature if layers is None or layer in layers else 1.0
        return softmax(scores / tau, *args, **kwargs)

    with mock.patch("torch.nn.functional.softmax", tempered_softmax), torch.no_grad():
        logits = model(**inputs).logits
    assert len(calls) == TINY["num_hidden_layers"], "one attention softmax per layer"
    return logits


def logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


def lm_inputs():
    batch = qa_batch()
    return {k: batch[k] for k in ("input_ids", "attention_mask")}, batch[
        "attention_mask"
    ]


@pytest.mark.parametrize("layers", [None, [1]], ids=["all-layers", "layer-1"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("family", FAMILIES)
def test_matches_explicit_temperature_reference(family, attn, layers):
    inputs, mask = lm_inputs()
    model = tiny_model(family, attn)
    expected = reference_logits(family, inputs, TAU, layers)
    with AttentionSmoothing(model, TAU, layers):
        smoothed = logits(model, inputs)
    valid = mask.bool()
    torch.testing.assert_close(smoothed[valid], expected[valid], atol=1e-5, rtol=0)
    # and it is a real change: the unsmoothed model is far from the reference
    assert (logits(model, inputs)[valid] - expected[valid]).abs().max() > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_temperature_one_and_removal_are_bit_exact(family):
    inputs, _ = lm_inputs()
    model = tiny_model(family, "sdpa")
    plain = logits(model, inputs)
    with AttentionSmoothing(model, 1.0):
        assert torch.equal(logits(model, inputs), plain)
    handle = smooth_attention(model, TAU)
    assert not torch.equal(logits(model, inputs), plain)
    handle.remove()
    assert torch.equal(logits(model, inputs), plain)


def test_sdpa_stays_sdpa():
    inputs, _ = lm_inputs()
    model = tiny_model("llama", "sdpa")
    sdpa = torch.nn.functional.scaled_dot_product_attention
    with (
        mock.patch(
            "torch.nn.functional.scaled_dot_product_attention", wraps=sdpa
        ) as kernel,
        smooth_attention(model, TAU),
    ):
        logits(model, inputs)
    assert model.config._attn_implementation == "sdpa"
    assert kernel.call_count == TINY["num_hidden_layers"]


def test_context_manager_is_on_only_inside():
    inputs, _ = lm_inputs()
    model = tiny_model("llama")
    plain = logits(model, inputs)
    smoothing = AttentionSmoothing(model, TAU)
    for _ in range(2):  # reusable, as the trainer does every step
        with smoothing:
            assert smoothing.active
            inside = logits(model, inputs)
        assert not smoothing.active
        assert torch.equal(logits(model, inputs), plain)
    assert not torch.equal(inside, plain)


def test_hydra_list_of_layers_is_accepted():
    model = tiny_model("llama")
    assert AttentionSmoothing(model, TAU, OmegaConf.create([2, 0])).layers == [0, 2]


def test_smoothing_twice_is_refused():
    model = tiny_model("llama")
    with smooth_attention(model, TAU):
        with pytest.raises(RuntimeError, match="already smoothed"):
            smooth_attention(model, 3.0)


@pytest.mark.parametrize(
    "temperature", [0, -1.0, float("nan"), float("inf"), True, "2.3", None]
)
def test_bad_temperature(temperature):
    with pytest.raises(ValueError, match=r"finite number > 0.*got"):
        AttentionSmoothing(tiny_model("llama"), temperature)


@pytest.mark.parametrize(
    "layers, message",
    [
        ([], "selects no layer; use null"),
        ([3], "unknown attention layer index 3: the model has layers 0..2"),
        ([-1], "unknown attention layer index -1"),
        ([1.0], "unknown attention layer index 1.0"),
        ("1", "list of ints"),
    ],
)
def test_bad_layers(layers, message):
    with pytest.raises(ValueError, match=message):
        AttentionSmoothing(tiny_model("llama"), TAU, layers)


# The tables of model families in docs/smoothing.md (test_docs_list_the_families_tested_here).
# Smoothed: the FAMILIES key, where the queries are scaled, whether 4.45.1 has it.
SMOOTHED = {
    "Llama": ("llama", "q_proj", True),
    "Qwen2": ("qwen2", "q_proj", True),
    "Mistral": ("mistral", "q_proj", True),
    "Gemma": ("gemma", "q_proj", True),
    "Phi-3": ("phi3", "qkv_proj", True),  # its query slice
    "phi-1.5": ("phi", "q_proj", True),
    "phi-1.5 with qk_layernorm": ("phi-qk", "q_layernorm", True),
    "Cohere with use_qk_norm": ("cohere-qk", "q_norm", True),
    "Qwen3": ("qwen3", "q_norm", False),
    "Gemma-3": ("gemma3", "q_norm", False),
    "OLMo-2": ("olmo2", "q_norm", False),
}
# Refused: config class, attention, config overrides, the reason the error gives.
REFUSED = {
    "Gemma-2, eager attention": (
        "Gemma2Config", "eager", {"head_dim": 8},
        "soft-caps scores in eager attention, so a query scale is not a softmax temperature",
    ),
    "Llama with pretraining_tp > 1": (
        "llama", "eager", {"pretraining_tp": 2},
        "computes queries from weight slices outside q_proj",
    ),
    "GPT-NeoX": ("GPTNeoXConfig", "eager", {}, "has neither q_proj nor qkv_proj"),
    "GPT-2": (
        "GPT2Config", "eager", {"n_embd": 32, "n_layer": 2, "n_head": 4},
        "found no attention layers with a layer_idx",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", SMOOTHED)
def test_queries_are_scaled_where_the_table_says(name):
    family, module, in_4_45 = SMOOTHED[name]
    if Version(transformers.__version__) == Version("4.45.1"):  # the table's column
        assert hasattr(transformers, FAMILIES[family][0]) == in_4_45
    model = tiny_model(family, "sdpa")
    names = {m: n.rsplit(".", 1)[-1] for n, m in model.named_modules()}
    targets = AttentionSmoothing(model, TAU)._targets
    assert {names[proj] for proj, _ in targets} == {module}


@pytest.mark.parametrize("name", REFUSED)
def test_unsupported_models_are_refused(name):
    family, attn, overrides, message = REFUSED[name]
    model = tiny_model(family, attn, **overrides)
    with pytest.raises(ValueError, match=re.escape(message)):
        AttentionSmoothing(model, TAU)


def family_tables():
    smoothed = markdown_table(
        ["model family", "transformers config", "queries scaled at", "tested on"],
        [
            [
                name,
                f"`{FAMILIES[family][0]}`",
                f"`{module}`",
                "4.45.1, newest" if in_4_45 else "newest (not in 4.45.1)",
            ]
            for name, (family, module, in_4_45) in SMOOTHED.items()
        ],
    )
    refused = markdown_table(
        ["model family", "refused: the error says"],
        [[name, reason] for name, (*_, reason) in REFUSED.items()],
    )
    return smoothed, refused


def test_docs_list_the_families_tested_here():
    page = (Path(__file__).parents[1] / "docs" / "smoothing.md").read_text()
    for table in family_tables():
        assert table in page, f"docs/smoothing.md lacks this table:\n{table}"


def test_softcapped_model_is_smoothed_under_sdpa():
    # sdpa does not soft-cap, so there the query scale is an exact temperature
    try:
        model = tiny_model("Gemma2Config", "sdpa", head_dim=8)
    except ValueError as e:  # transformers 5 has no Gemma-2 sdpa path
        pytest.skip(str(e)[:80])
    assert len(AttentionSmoothing(model, TAU).layers) == TINY["num_hidden_layers"]


def test_model_handler_loads_the_smoothed_teacher(tmp_path):
    inputs, _ = lm_inputs()
    model = tiny_model("llama", "sdpa")
    model.save_pretrained(tmp_path)
    loaded = AttentionSmoothedForCausalLM.from_pretrained(
        tmp_path, attention_temperature=TAU, attention_layers=[1]
    )
    with AttentionSmoothing(model, TAU, [1]):
        torch.testing.assert_close(logits(loaded, inputs), logits(model, inputs))
    with pytest.raises(ValueError, match="needs model_args.attention_temperature"):
        AttentionSmoothedForCausalLM.from_pretrained(tmp_path)


def test_a_checked_spec_smooths_another_copy_as_the_model_itself_would():
    model, batch = tiny_model("llama"), qa_batch()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    spec = SmoothingSpec.check(model, TAU, [1, 0])
    assert spec == SmoothingSpec(TAU, (0, 1))
    copy = tiny_model("llama")  # same weights: the frozen copy a trainer makes
    with spec.on(copy):
        smoothed = copy(**inputs).logits
    with AttentionSmoothing(model, TAU, [0, 1]):
        expected = model(**inputs).logits
    torch.testing.assert_close(smoothed, expected)
    assert not torch.allclose(smoothed, copy(**inputs).logits)


def test_a_spec_refuses_bad_layers_before_anything_is_smoothed():
    with pytest.raises(ValueError, match="unknown attention layer index 9"):
        SmoothingSpec.check(tiny_model("llama"), TAU, [9])
