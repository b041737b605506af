"""ASU trainers. Imports open-unlearning's ``trainer`` package: load via ``register()``."""

from trainer.unlearn.rmu import RMU

from asu_plugin.asu.reference import Reference
from asu_plugin.asu.smoothing import SmoothingSpec, check_temperature
from asu_plugin.core.inputs import LM_KEYS, lm_inputs
from asu_plugin.core.trainer import HostEntry, Unlearner


class ASU_GD(Unlearner):
    """Attention Smoothing Unlearning.

    Forget: KL(teacher_τ ‖ model) on forget label tokens, the teacher being the frozen
    starting model with attention temperature τ. Retain: NLL, or KL to the same frozen
    model at τ = 1. ``loss = gamma * forget + alpha * retain``, GradDiff's weights (the
    paper's α is ``gamma``). With ``peft`` (a ``peft.get_peft_config`` dict) only an adapter
    trains, and the frozen model is the student's base with the adapter disabled: no copy.
    """

    LOGGED = ("forget_kl", "retain_loss")
    SETTINGS = {"temperature": check_temperature}  # the layers need the model

    def __init__(self, temperature=2.3, layers=None, gamma=0.1, *args, **kwargs):
        # checked before the frozen copy is made; the teacher smooths that copy
        smoothing = SmoothingSpec.check(kwargs.get("model"), temperature, layers)
        super().__init__(*args, gamma=gamma, **kwargs)
        self.reference = Reference(
            self.ref_model,
            smoothing,
            adapter_base=self.uses_adapter,
            chunk_size=self.logits_chunk_size,
        )

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
        self.log_terms(forget_loss, retain_loss)
        return (loss, forget_outputs) if return_outputs else loss


class ASU_KL(ASU_GD):
    """ASU with the retain term KL(original ‖ model) on retain label tokens."""

    def __init__(self, retain_loss_type="KL", *args, **kwargs):
        super().__init__(*args, retain_loss_type=retain_loss_type, **kwargs)


# RMU's loss: compute_unlearn_loss after the host's transformers-4.51 port, else compute_loss
_RMU_LOSS = getattr(RMU, "compute_unlearn_loss", RMU.compute_loss)


class ASU_RMU(HostEntry, RMU):
    """Representation-level ASU (the paper's WMDP variant): RMU with its random control
    vector replaced by the forget-teacher's activations.

    Forget: MSE between the student's ``module_regex`` output on forget text and the frozen
    model's with attention temperature τ (on ``layers``; None: all). Retain and the
    trainable-parameter selection are RMU's. At τ = 1 the target is the frozen model itself.
    """

    SETTINGS = {"temperature": check_temperature}

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
