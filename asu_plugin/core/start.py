"""The model as unlearning started: a frozen copy for full fine-tuning; for a PEFT student,
the student itself with its adapter disabled, so no copy is made."""

import importlib
from contextlib import ExitStack, contextmanager, nullcontext

import torch
from omegaconf import DictConfig, OmegaConf
from peft import PeftModel, get_peft_config, get_peft_model

from asu_plugin.core.logits import CHUNK_SIZE, Positions, forward, kl_and_logprobs


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
def eval_mode(model):
    """``model`` in eval mode inside the block, as it was after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class StartingModel:
    """``model`` as it was when unlearning started, read without gradient.

    ``model`` is a frozen copy; with ``adapter_base=True``, a ``PeftModel`` student whose
    adapter-disabled base is the start. A method reads a variant of the start by passing
    ``context``, a context manager entered around the start's forward (ASU's forget-teacher
    is its attention smoothing). ``chunk_size``: label positions whose logits are computed
    at once (None: the full logits; ``asu_plugin.core.logits``).
    """

    def __init__(self, model, adapter_base=False, chunk_size=CHUNK_SIZE):
        if adapter_base and not isinstance(model, PeftModel):
            raise TypeError(
                f"adapter_base=True needs a peft PeftModel, got {type(model).__name__}"
            )
        self.model = model
        self.adapter_base = adapter_base
        self.chunk_size = chunk_size

    @contextmanager
    def as_started(self, context=None):
        """The model inside the block is the start (and ``context`` is entered)."""
        with ExitStack() as stack:
            if self.adapter_base:
                stack.enter_context(self.model.disable_adapter())
                stack.enter_context(eval_mode(self.model))
            stack.enter_context(context or nullcontext())
            yield

    @torch.no_grad()
    def positions(self, inputs, context=None) -> Positions:
        """The start's ``Positions`` on ``inputs``; its projection runs as the start too."""
        with self.as_started(context):
            states, project, _ = forward(self.model, inputs, self.chunk_size)

        def project_as_started(rows):
            with self.as_started():
                return project(rows)

        return Positions(states, project_as_started, None)

    @torch.no_grad()
    def logits(self, inputs, context=None):
        """Full logits of the start."""
        with self.as_started(context):
            return forward(self.model, inputs, chunk_size=None).states

    def kl_and_logprobs(self, model, inputs, context=None):
        """KL(start ‖ ``model``) at label tokens (``asu_plugin.core.logits``), ``model``'s
        log-probabilities of the labels and its outputs."""
        start = self.positions(inputs, context)
        student = forward(model, inputs, self.chunk_size)
        kl, logprobs = kl_and_logprobs(
            student, start, inputs["labels"], self.chunk_size
        )
        return kl, logprobs, student.outputs

    def kl(self, model, inputs, context=None):
        """KL(start ‖ ``model``) averaged over each sequence's label tokens, then over the
        sequences; and ``model``'s outputs."""
        kl, _, outputs = self.kl_and_logprobs(model, inputs, context)
        return kl, outputs
