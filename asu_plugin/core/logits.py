"""Next-token losses at the positions they read, without a full-length logits tensor.

``forward`` runs the model for its final hidden states (transformers' ``logits_to_keep`` /
``num_logits_to_keep`` = 1, so the model itself projects one position); a loss gathers the
positions it reads and projects them ``chunk_size`` at a time through the model's own
output layer: its projection (LoRA on it, tied weights and ZeRO-3's gathering included) and
the family's logit scale or soft-cap. Each chunk is recomputed for backward (activation
checkpointing), so no more than one chunk of ``chunk_size x vocabulary`` logits lives at a
time. With ``chunk_size=None``, or for a family this path does not reproduce exactly (said
once), ``forward`` returns the model's full logits and the same losses read those.
"""

import functools
import inspect
import logging
import math
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel

from asu_plugin.core.inputs import label_positions

CHUNK_SIZE = 256  # positions: 256 x 128k-token vocabulary = 128 MiB of float32 logits
# families whose logits are exactly the output embeddings of the last hidden state, then
# Cohere's logit_scale or Gemma-2/3's final soft-cap (tests/test_logits.py checks each)
PROJECTED = {
    "llama", "mistral", "qwen2", "qwen3", "phi", "phi3", "gemma", "gemma2",
    "gemma3_text", "cohere", "olmo2",
}  # fmt: skip
_KEEP_ARGUMENTS = (
    "logits_to_keep",
    "num_logits_to_keep",
)  # transformers >= 4.50, < 4.50
logger = logging.getLogger(__name__)
_told = set()


def language_model(model: nn.Module) -> PreTrainedModel:
    """The Hugging Face model inside DDP / DeepSpeed / PEFT wrappers."""
    if isinstance(model, PreTrainedModel):
        return model
    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            return module
    raise TypeError(f"{type(model).__name__} holds no transformers PreTrainedModel")


def identity(rows):
    return rows


class OutputLayer:
    """A causal LM's logits as a function of its last hidden states."""

    def __init__(self, lm: PreTrainedModel):
        self.projection = lm.get_output_embeddings()
        self.scale = getattr(lm, "logit_scale", None)  # Cohere
        self.softcap = getattr(lm.config, "final_logit_softcapping", None)  # Gemma-2/3

    def __call__(self, hidden):
        logits = self.projection(hidden)
        if self.scale is not None:
            logits = logits * self.scale
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


class Positions(NamedTuple):
    """A forward as a loss reads it: ``states`` ``[batch, length, d]`` and ``project``,
    mapping rows of states to next-token logits (d = the hidden size; or the vocabulary,
    ``project`` the identity, when ``states`` are the full logits); the model's outputs."""

    states: torch.Tensor
    project: Callable
    outputs: Any


@functools.cache
def _keep_argument(model_class, model_type):
    """The forward argument that limits the logits the model computes, or None where this
    family takes the full logits (said once: the answer is cached per class)."""
    parameters = inspect.signature(model_class.forward).parameters
    keep = next((k for k in _KEEP_ARGUMENTS if k in parameters), None)
    if model_type in PROJECTED and keep is not None:
        return keep
    if model_type not in _told:
        _told.add(model_type)
        logger.warning(
            "asu-plugin: %s computes its losses from full logits (its output layer is "
            "not one the chunked path reproduces exactly)",
            model_type,
        )
    return None


def forward(model, inputs, chunk_size=CHUNK_SIZE) -> Positions:
    """``model`` (wrapped or not) on ``inputs``' ``input_ids`` / ``attention_mask``."""
    model_inputs = {k: inputs[k] for k in ("input_ids", "attention_mask")}
    lm = language_model(model)
    keep = (
        _keep_argument(type(lm), lm.config.model_type)
        if chunk_size is not None
        else None
    )
    if keep is None:
        outputs = model(**model_inputs)
        return Positions(outputs.logits, identity, outputs)
    outputs = model(**model_inputs, output_hidden_states=True, **{keep: 1})
    hidden = outputs.hidden_states[-1]
    outputs.hidden_states = None  # the last one is kept, not every layer's
    return Positions(hidden, OutputLayer(lm), outputs)


def _chunked(function, chunk_size, *rows):
    """``function`` on ``chunk_size`` rows at a time (None: all at once), each chunk
    recomputed for backward; the results concatenated."""
    count = len(rows[0])
    if count == 0:
        return function(*rows)
    size = chunk_size or count
    return torch.cat(
        [
            checkpoint(function, *(r[i : i + size] for r in rows), use_reentrant=False)
            for i in range(0, count, size)
        ]
    )


def sequence_mean(values, positions):
    """Mean of ``values`` (one per True of ``positions``, in its order) over each row's
    positions, then over the rows that have any."""
    counts = positions.sum(-1)
    rows = positions.nonzero()[:, 0]
    per_row = values.new_zeros(counts.shape).index_add(0, rows, values)
    has_tokens = counts > 0
    return (per_row[has_tokens] / counts[has_tokens]).mean()


def label_terms(student, teacher, labels, chunk_size=CHUNK_SIZE):
    """At each label token (position t predicting label t + 1): KL(teacher ‖ student) over
    the vocabulary and the student's log-probability of the label, ``[tokens, 2]``.
    ``student`` / ``teacher``: ``Positions``; the teacher's are read without gradient."""
    positions = label_positions(labels)
    if not positions.any():
        raise ValueError("batch has no label tokens (all labels are -100)")

    def terms(student_rows, teacher_rows, targets):
        log_p = F.log_softmax(student.project(student_rows).float(), dim=-1)
        with torch.no_grad():
            log_q = F.log_softmax(teacher.project(teacher_rows).float(), dim=-1)
        kl = F.kl_div(log_p, log_q, reduction="none", log_target=True).sum(-1)
        return torch.stack([kl, log_p.gather(-1, targets[:, None])[:, 0]], dim=-1)

    return _chunked(
        terms,
        chunk_size,
        student.states[:, :-1][positions],
        teacher.states[:, :-1][positions],
        labels[:, 1:][positions],
    )


def kl_and_logprobs(student, teacher, labels, chunk_size=CHUNK_SIZE):
    """``label_terms`` as the trainers read them: the KL averaged over each sequence's
    label tokens, then over the sequences; and the log-probability of each next label
    token, ``[batch, length - 1]`` (0 where no label)."""
    positions = label_positions(labels)
    terms = label_terms(student, teacher, labels, chunk_size)
    kl = sequence_mean(terms[:, 0], positions)
    logprobs = terms.new_zeros(positions.shape).masked_scatter(positions, terms[:, 1])
    return kl, logprobs


def label_logprobs(model_positions, labels, chunk_size=CHUNK_SIZE):
    """The log-probability of each label token (position t predicting label t + 1), in
    the batch's order, ``[tokens]``."""
    positions = label_positions(labels)

    def logprobs(rows, targets):
        log_p = F.log_softmax(model_positions.project(rows).float(), dim=-1)
        return log_p.gather(-1, targets[:, None])[:, 0]

    rows = model_positions.states[:, :-1][positions]
    return _chunked(logprobs, chunk_size, rows, labels[:, 1:][positions])


def sequence_kl(student_logits, teacher_logits, labels):
    """KL(teacher ‖ student) over the vocabulary at label tokens, from full logits.

    Position t predicts label t+1; positions whose next label is -100 are skipped.
    Averaged over each sequence's tokens, then over the sequences that have any.
    """
    student = Positions(student_logits, identity, None)
    teacher = Positions(teacher_logits, identity, None)
    return kl_and_logprobs(student, teacher, labels, chunk_size=None)[0]


def uniform_kl(model_positions, positions, chunk_size=CHUNK_SIZE):
    """KL(uniform ‖ softmax(logits)) averaged over the ``positions`` (``[batch, length -
    1]``, position t predicting token t + 1) of the whole batch: ``-log V - mean_v log p_v``
    at each."""
    rows = model_positions.states[:, :-1][positions]
    if rows.shape[0] == 0:
        raise ValueError("the batch has no token to score")

    def to_uniform(chunk):
        log_p = F.log_softmax(model_positions.project(chunk).float(), dim=-1)
        return -math.log(log_p.shape[-1]) - log_p.mean(-1)

    return _chunked(to_uniform, chunk_size, rows).mean()
