"""ASU trainers. Imports open-unlearning's ``trainer`` package: load via ``register()``."""

import torch
from trainer.unlearn.grad_diff import GradDiff
from trainer.unlearn.rmu import RMU

from asu_plugin.asu.smoothing import SmoothingSpec
from asu_plugin.losses import LM_KEYS, check_retain_loss_type, check_weight, lm_inputs
from asu_plugin.reference import Reference, add_adapter


class ASU_GD(GradDiff):
    """Attention Smoothing Unlearning.

    Forget: KL(teacher_τ ‖ model) on forget label tokens, the teacher being the frozen
    starting model with attention temperature τ. Retain: NLL, or KL to the same frozen
    model at τ = 1. ``loss = gamma * forget + alpha * retain``, GradDiff's weights (the
    paper's α is ``gamma``). With ``peft`` (a ``peft.get_peft_config`` dict) only an adapter
    trains, and the frozen model is the student's base with the adapter disabled: no copy.
    """

    def __init__(
        self,
        temperature=2.3,
        layers=None,
        gamma=0.1,
        alpha=1.0,
        retain_loss_type="NLL",
        peft=None,
        *args,
        **kwargs,
    ):
        check_retain_loss_type(retain_loss_type)
        # checked before the frozen copy is made; the teacher smooths that copy
        smoothing = SmoothingSpec.check(kwargs.get("model"), temperature, layers)
        if peft is not None:
            kwargs["model"] = add_adapter(kwargs["model"], peft)
        gamma, alpha = check_weight("gamma", gamma), check_weight("alpha", alpha)
        self.uses_adapter = peft is not None
        super().__init__(
            *args, gamma=gamma, alpha=alpha, retain_loss_type=retain_loss_type, **kwargs
        )
        if self.ref_model is None:
            self.ref_model = self._prepare_ref_model(self.model)
        self.reference = Reference(
            self.ref_model, smoothing, adapter_base=self.uses_adapter
        )
        if self.uses_adapter and self.args.gradient_checkpointing:
            self.model.enable_input_require_grads()  # frozen embeddings: grads via inputs
        self._loss_sums, self._loss_count = 0.0, 0  # for forget_kl / retain_loss logs

    def _prepare_ref_model(self, model):
        return model if self.uses_adapter else super()._prepare_ref_model(model)

    def create_optimizer(self):
        """The host's optimizer without empty parameter groups: an adapter has nothing
        exempt from weight decay, and ZeRO-3 drops the empty group after the learning-rate
        scheduler has counted it (its first step then fails)."""
        optimizer = super().create_optimizer()
        optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]
        return optimizer

    def compute_retain_loss(self, model, retain_inputs):
        if self.retain_loss_type == "KL":
            return self.reference.kl(model, retain_inputs, smoothed=False)[0]
        return super().compute_retain_loss(model, retain_inputs)

    def compute_unlearn_loss(
        self, model, inputs, return_outputs=False, num_items_in_batch=None
    ):
        forget_inputs = lm_inputs(inputs, "forget")
        retain_inputs = lm_inputs(inputs, "retain")
        forget_loss, forget_outputs = self.reference.kl(
            model, forget_inputs, smoothed=True
        )
        retain_loss = self.compute_retain_loss(model, retain_inputs)
        loss = self.gamma * forget_loss + self.alpha * retain_loss
        self._loss_sums = (
            self._loss_sums + torch.stack([forget_loss, retain_loss]).detach()
        )
        self._loss_count += 1
        return (loss, forget_outputs) if return_outputs else loss

    def log(self, logs, *args, **kwargs):
        """Adds the mean forget KL and retain loss since the last log to the loss log
        (means over the processes too, as the host's loss is)."""
        if "loss" in logs and self._loss_count:
            means = self._loss_sums / self._loss_count
            forget_kl, retain_loss = self.accelerator.reduce(means, "mean").tolist()
            logs = {**logs, "forget_kl": forget_kl, "retain_loss": retain_loss}
            self._loss_sums, self._loss_count = 0.0, 0
        super().log(logs, *args, **kwargs)

    if not hasattr(GradDiff, "compute_unlearn_loss"):
        # Host before its transformers-4.51 port trains through compute_loss.
        compute_loss = compute_unlearn_loss


class ASU_KL(ASU_GD):
    """ASU with the retain term KL(original ‖ model) on retain label tokens."""

    def __init__(self, retain_loss_type="KL", *args, **kwargs):
        super().__init__(*args, retain_loss_type=retain_loss_type, **kwargs)


# RMU's loss: compute_unlearn_loss after the host's transformers-4.51 port, else compute_loss
_RMU_LOSS = getattr(RMU, "compute_unlearn_loss", RMU.compute_loss)


class ASU_RMU(RMU):
    """Representation-level ASU (the paper's WMDP variant): RMU with its random control
    vector replaced by the forget-teacher's activations.

    Forget: MSE between the student's ``module_regex`` output on forget text and the frozen
    model's with attention temperature τ (on ``layers``; None: all). Retain and the
    trainable-parameter selection are RMU's. At τ = 1 the target is the frozen model itself.
    """

    def __init__(self, temperature=100.0, layers=None, *args, **kwargs):
        # checked before the frozen copy is made; the teacher smooths that copy
        smoothing = SmoothingSpec.check(kwargs.get("model"), temperature, layers)
        super().__init__(*args, **kwargs)
        self.teacher = smoothing.on(self.ref_model)
        self._forget_inputs = None

    def get_control_vector(self, dim):
        """The forget-teacher's activations at ``module_regex`` on this step's forget batch."""
        with self.teacher:
            target, _ = self.forward_with_cache(
                self.ref_model, self._forget_inputs, self.ref_module, no_grad=True
            )
        return target

    def compute_unlearn_loss(self, model, inputs, *args, **kwargs):
        forget_inputs = lm_inputs(inputs, "forget")
        self._forget_inputs = {k: forget_inputs[k] for k in LM_KEYS[:2]}
        return _RMU_LOSS(self, model, inputs, *args, **kwargs)

    if not hasattr(RMU, "compute_unlearn_loss"):
        compute_loss = compute_unlearn_loss
