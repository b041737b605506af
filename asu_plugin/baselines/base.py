"""What the paper's baselines share: GradDiff's ``gamma * forget + alpha * retain`` and its
retain terms (the host's NLL, or its KL to the starting model). Imports open-unlearning's
``trainer`` package: load via ``register()``."""

from asu_plugin.core.checks import check_settings
from asu_plugin.core.inputs import lm_inputs
from asu_plugin.core.trainer import Unlearner


def refuse_peft(peft):
    if peft is not None:
        raise ValueError(
            f"the paper's baselines train all weights, got peft={peft!r}: "
            "drop trainer.method_args.peft"
        )


class PaperBaseline(Unlearner):
    """``loss = gamma * forget + alpha * retain``; retain is GradDiff's NLL or KL to the
    starting model. All weights train. Subclasses define ``compute_forget_loss``."""

    needs_start = False  # GradDiff's own frozen copy serves its KL retain term
    SETTINGS = {"peft": refuse_peft}

    def __init__(self, *args, peft=None, **kwargs):
        check_settings(PaperBaseline, peft=peft)
        super().__init__(*args, **kwargs)

    def compute_forget_loss(self, model, inputs):
        """``(loss, outputs)`` of the forget term on the whole batch ``inputs``."""
        raise NotImplementedError

    def compute_retain_term(self, model, inputs):
        retain = inputs.get("retain")
        part = "original" if isinstance(retain, dict) and "original" in retain else None
        return self.compute_retain_loss(model, lm_inputs(inputs, "retain", part))

    def compute_unlearn_loss(
        self, model, inputs, return_outputs=False, num_items_in_batch=None
    ):
        forget_loss, forget_outputs = self.compute_forget_loss(model, inputs)
        retain_loss = self.compute_retain_term(model, inputs)
        loss = self.gamma * forget_loss + self.alpha * retain_loss
        return (loss, forget_outputs) if return_outputs else loss
