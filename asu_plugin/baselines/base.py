"""What the paper's baselines share: GradDiff's ``gamma * forget + alpha * retain`` and its
retain terms. Imports open-unlearning's ``trainer`` package: load via ``register()``."""

from trainer.unlearn.grad_diff import GradDiff

from asu_plugin.losses import check_retain_loss_type, check_weight, lm_inputs


class PaperBaseline(GradDiff):
    """``loss = gamma * forget + alpha * retain``; retain is GradDiff's NLL or KL to the
    starting model. Subclasses define ``compute_forget_loss``."""

    def __init__(self, gamma=1.0, alpha=1.0, retain_loss_type="NLL", *args, **kwargs):
        check_retain_loss_type(retain_loss_type)
        gamma, alpha = check_weight("gamma", gamma), check_weight("alpha", alpha)
        super().__init__(
            *args, gamma=gamma, alpha=alpha, retain_loss_type=retain_loss_type, **kwargs
        )

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

    if not hasattr(GradDiff, "compute_unlearn_loss"):
        # Host before its transformers-4.51 port trains through compute_loss.
        compute_loss = compute_unlearn_loss
