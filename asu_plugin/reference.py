"""The model as unlearning started: ASU's forget-teacher (smoothed) and retain reference.

A frozen copy for full fine-tuning; for a PEFT student, the student itself with its
adapter disabled, so no copy is made.
"""

import importlib
from contextlib import ExitStack, contextmanager

import torch
from omegaconf import DictConfig, OmegaConf
from peft import PeftModel, get_peft_config, get_peft_model

from asu_plugin.asu.smoothing import AttentionSmoothing
from asu_plugin.losses import sequence_kl


def add_adapter(model, peft_config):
    """Wrap ``model`` in a PEFT adapter; ``peft_config`` is a ``peft.get_peft_config`` dict."""
    if isinstance(peft_config, DictConfig):
        peft_config = OmegaConf.to_container(peft_config, resolve=True)
    config = dict(peft_config)
    if "peft_type" not in config:
        raise ValueError(
            f"peft config needs a peft_type (e.g. LORA), got keys {sorted(config)}"
        )
    config.setdefault("task_type", "CAUSAL_LM")
    if torch.distributed.is_available():
        # peft >= 0.18 tests isinstance(weight, torch.distributed.tensor.DTensor) without
        # importing that submodule: newer transformers import it with modeling_utils,
        # 4.45.1 (the host's pin) does not, and get_peft_model raises AttributeError in
        # any process where nothing else imported it.
        importlib.import_module("torch.distributed.tensor")
    return get_peft_model(model, get_peft_config(config))


@contextmanager
def _eval_mode(model):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class Reference:
    """``model`` as it was when unlearning started, plain or with attention temperature τ.

    ``model`` is a frozen copy; with ``adapter_base=True``, a ``PeftModel`` student whose
    adapter-disabled base is the start. ``temperature``: τ (with ``layers``) or a
    ``SmoothingSpec`` the trainer checked.
    """

    def __init__(self, model, temperature, layers=None, adapter_base=False):
        if adapter_base and not isinstance(model, PeftModel):
            raise TypeError(
                f"adapter_base=True needs a peft PeftModel, got {type(model).__name__}"
            )
        self.model = model
        self.adapter_base = adapter_base
        self.smoothing = AttentionSmoothing(model, temperature, layers)

    @contextmanager
    def _as_started(self, smoothed):
        with ExitStack() as stack:
            if self.adapter_base:
                stack.enter_context(self.model.disable_adapter())
                stack.enter_context(_eval_mode(self.model))
            if smoothed:
                stack.enter_context(self.smoothing)
            yield

    @torch.no_grad()
    def logits(self, inputs, smoothed):
        """Logits of the starting model (the forget-teacher if ``smoothed``)."""
        with self._as_started(smoothed):
            return self.model(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
            ).logits

    def kl(self, model, inputs, smoothed):
        """``sequence_kl`` of ``model`` to the starting model (the τ-teacher if
        ``smoothed``) on ``inputs``; returns the loss and ``model``'s outputs."""
        teacher_logits = self.logits(inputs, smoothed)
        outputs = model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        )
        return sequence_kl(outputs.logits, teacher_logits, inputs["labels"]), outputs
