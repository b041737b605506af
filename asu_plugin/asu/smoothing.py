"""Attention smoothing: raise the softmax temperature of a causal LM's attention.

Scores become ``q·kᵀ / (τ·√d)``. The queries are scaled by ``1/τ`` where they leave
their last non-linear step: the query projection's output, or the query norm's in
QK-norm models (Qwen3, Gemma-3, OLMo-2, ...). RoPE is linear, so this equals dividing
the scores; it works on every transformers version and keeps sdpa / flash-attention
kernels.
"""

from collections.abc import Sequence
from typing import NamedTuple

from torch import nn
from transformers import PreTrainedModel

from asu_plugin.core.checks import check_positive
from asu_plugin.core.logits import language_model

_QUERY_NORMS = ("q_norm", "q_layernorm")


def check_temperature(temperature) -> float:
    return check_positive(
        "attention temperature",
        temperature,
        " (τ > 1 smooths, τ = 1 is the model itself)",
    )


def _query_projection(attn: nn.Module, config) -> tuple[nn.Module, int | None]:
    """The module whose output holds the queries, and the query width if fused."""
    name = type(attn).__name__
    if getattr(config, "pretraining_tp", 1) > 1:
        raise ValueError(
            f"pretraining_tp={config.pretraining_tp} computes queries from weight "
            "slices outside q_proj; set config.pretraining_tp=1 (same function) to smooth"
        )
    if (
        getattr(config, "attn_logit_softcapping", None) is not None
        and config._attn_implementation != "sdpa"
    ):
        raise ValueError(
            f"attn_logit_softcapping={config.attn_logit_softcapping} soft-caps scores "
            f"in {config._attn_implementation} attention, so a query scale is not a "
            "softmax temperature; attention smoothing does not support this model"
        )
    for norm in _QUERY_NORMS:  # QK-norm: a scale before it would be normalised away
        if isinstance(getattr(attn, norm, None), nn.Module):
            return getattr(attn, norm), None
    if isinstance(getattr(attn, "q_proj", None), nn.Module):
        return attn.q_proj, None
    if isinstance(getattr(attn, "qkv_proj", None), nn.Module):  # Phi-3: [q | k | v]
        return attn.qkv_proj, config.num_attention_heads * attn.head_dim
    raise ValueError(f"{name} has neither q_proj nor qkv_proj; cannot smooth it")


def _attention_layers(model: PreTrainedModel) -> dict[int, nn.Module]:
    layers = {
        m.layer_idx: m
        for m in model.modules()
        if isinstance(getattr(m, "layer_idx", None), int)
        and any(hasattr(m, p) for p in ("q_proj", "qkv_proj", "query_key_value"))
    }
    if not layers:
        raise ValueError(
            f"found no attention layers with a layer_idx in {type(model).__name__}; "
            "attention smoothing does not support this model"
        )
    return layers


def _select_layers(layers, available: Sequence[int]) -> list[int]:
    if layers is None:
        return sorted(available)
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise ValueError(f"layers must be null (all) or a list of ints, got {layers!r}")
    if len(layers) == 0:
        raise ValueError("layers=[] selects no layer; use null to smooth every layer")
    for idx in layers:
        if isinstance(idx, bool) or not isinstance(idx, int) or idx not in available:
            raise ValueError(
                f"unknown attention layer index {idx!r}: the model has layers "
                f"0..{max(available)}"
            )
    return sorted(set(layers))


def _scale_queries(scale: float, width: int | None):
    def hook(module, args, output):
        if width is None:
            return output * scale
        output = output.clone()
        output[..., :width] *= scale
        return output

    return hook


class SmoothingSpec(NamedTuple):
    """What a forget-teacher smooths: τ and the attention layers (sorted indices).

    ``check`` validates them against a model once; the trainer does so before the frozen
    copy is made and its teacher smooths that copy with ``on``.
    """

    temperature: float
    layers: tuple[int, ...]

    @classmethod
    def check(cls, model: nn.Module, temperature, layers=None) -> "SmoothingSpec":
        """τ and ``layers`` (None: all) checked against ``model``'s attention layers."""
        temperature = check_temperature(temperature)
        lm = language_model(model)
        available = _attention_layers(lm)
        chosen = _select_layers(layers, list(available))
        for idx in chosen:  # a model whose queries cannot be scaled fails here
            _query_projection(available[idx], lm.config)
        return cls(temperature, tuple(chosen))

    def on(self, model: nn.Module) -> "AttentionSmoothing":
        """The smoothing of ``model`` (of the architecture checked), off until applied."""
        return AttentionSmoothing(model, self)

    def _targets(self, model):
        lm = language_model(model)
        available = _attention_layers(lm)
        return [_query_projection(available[idx], lm.config) for idx in self.layers]


class AttentionSmoothing:
    """Softmax temperature τ on all (``layers=None``) or selected attention layers.

    ``temperature``: τ, validated here with ``layers``, or a ``SmoothingSpec`` checked
    already. ``apply()``/``remove()`` switch it on and off; used as a context manager it
    is on inside the block only.
    """

    def __init__(self, model: nn.Module, temperature, layers=None):
        spec = (
            temperature
            if isinstance(temperature, SmoothingSpec)
            else SmoothingSpec.check(model, temperature, layers)
        )
        self.temperature, self.layers = spec.temperature, list(spec.layers)
        self._targets = spec._targets(model)
        self._handles = []

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def apply(self) -> "AttentionSmoothing":
        if self.active or self.temperature == 1.0:
            return self
        for proj, _ in self._targets:
            if getattr(proj, "_asu_smoothed", False):
                raise RuntimeError(
                    "attention is already smoothed; remove that smoothing first"
                )
        for proj, width in self._targets:
            handle = proj.register_forward_hook(
                _scale_queries(1.0 / self.temperature, width)
            )
            proj._asu_smoothed = True
            self._handles.append((proj, handle))
        return self

    def remove(self) -> None:
        for proj, handle in self._handles:
            handle.remove()
            proj._asu_smoothed = False
        self._handles = []

    def __enter__(self) -> "AttentionSmoothing":
        return self.apply()

    def __exit__(self, *exc) -> None:
        self.remove()


def smooth_attention(model: nn.Module, temperature: float, layers=None):
    """Smooth ``model``'s attention until ``.remove()`` (or the end of a ``with``)."""
    return AttentionSmoothing(model, temperature, layers).apply()
