"""The base of the plugin's trainers. Imports open-unlearning's ``trainer`` package: load via
``asu_plugin.register()``."""

from functools import partial

import torch
from trainer.unlearn.grad_diff import GradDiff

from asu_plugin.core.checks import (
    check_chunk_size,
    check_retain_loss_type,
    check_settings,
    check_weight,
)
from asu_plugin.core.logits import CHUNK_SIZE
from asu_plugin.core.start import add_adapter


class HostEntry:
    """The host's training entry point on both host versions: open-unlearning calls
    ``compute_unlearn_loss`` since its transformers-4.51 port, ``compute_loss`` before."""

    if not hasattr(GradDiff, "compute_unlearn_loss"):

        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            return self.compute_unlearn_loss(model, inputs, return_outputs, **kwargs)


class Unlearner(HostEntry, GradDiff):
    """GradDiff's ``loss = gamma * forget + alpha * retain`` with its settings checked, and
    what the plugin's trainers share: with ``peft`` (a ``peft.get_peft_config`` dict) only
    an adapter trains; ``needs_start`` trainers get ``self.ref_model``, the starting model
    (a frozen copy, or the student itself whose adapter they disable: no copy); the terms
    named in ``LOGGED`` are logged as their means since the last log.
    ``logits_chunk_size``: label positions whose logits are computed at once (null: full).
    ``SETTINGS``: each setting's check, also run when the host's config is composed.
    """

    LOGGED = ()
    needs_start = True
    SETTINGS = {
        "gamma": partial(check_weight, "gamma"),
        "alpha": partial(check_weight, "alpha"),
        "retain_loss_type": check_retain_loss_type,
        "logits_chunk_size": check_chunk_size,
    }

    def __init__(
        self,
        gamma=1.0,
        alpha=1.0,
        retain_loss_type="NLL",
        peft=None,
        logits_chunk_size=CHUNK_SIZE,
        *args,
        **kwargs,
    ):
        checked = check_settings(
            Unlearner,
            gamma=gamma,
            alpha=alpha,
            retain_loss_type=retain_loss_type,
            logits_chunk_size=logits_chunk_size,
        )
        gamma, alpha = checked["gamma"], checked["alpha"]
        self.logits_chunk_size = checked["logits_chunk_size"]
        self.uses_adapter = peft is not None
        if self.uses_adapter and kwargs.get("model") is not None:
            kwargs["model"] = add_adapter(kwargs["model"], peft)
        super().__init__(
            *args, gamma=gamma, alpha=alpha, retain_loss_type=retain_loss_type, **kwargs
        )
        if self.needs_start and self.ref_model is None:
            self.ref_model = self._prepare_ref_model(self.model)
        if self.uses_adapter and self.args.gradient_checkpointing:
            self.model.enable_input_require_grads()  # frozen embeddings: grads via inputs
        self._term_sums, self._term_count = 0.0, 0

    def _prepare_ref_model(self, model):
        return model if self.uses_adapter else super()._prepare_ref_model(model)

    def create_optimizer(self):
        """The host's optimizer without empty parameter groups: an adapter has nothing
        exempt from weight decay, and ZeRO-3 drops the empty group after the learning-rate
        scheduler has counted it (its first step then fails)."""
        optimizer = super().create_optimizer()
        optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]
        return optimizer

    def log_terms(self, *terms):
        """Record this step's values of the ``LOGGED`` terms."""
        values = torch.stack([torch.as_tensor(t).detach().float() for t in terms])
        self._term_sums = self._term_sums + values
        self._term_count += 1

    def log(self, logs, *args, **kwargs):
        """Adds the mean of each ``LOGGED`` term since the last log to the loss log (means
        over the processes too, as the host's loss is)."""
        if "loss" in logs and self._term_count:
            means = self.accelerator.reduce(self._term_sums / self._term_count, "mean")
            logs = {**logs, **dict(zip(self.LOGGED, means.tolist(), strict=True))}
            self._term_sums, self._term_count = 0.0, 0
        super().log(logs, *args, **kwargs)
