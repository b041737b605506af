"""What the paper's baselines share: GradDiff's ``gamma * forget + alpha * retain`` and its
retain terms. Imports open-unlearning's ``trainer`` package: load via ``register()``."""

from trainer.unlearn.grad_diff import GradDiff

from asu_plugin.losses import check_weight

RETAIN_LOSS_TYPES = ("NLL", "KL")
LM_KEYS = ("input_ids", "attention_mask", "labels")


def lm_inputs(inputs, split, part=None, experiment="the matching experiment"):
    """The model inputs of ``inputs[split]`` (of its ``part``, e.g. ``"alternate"``)."""
    batch = inputs.get(split)
    if part is not None and isinstance(batch, dict):
        batch = batch.get(part)
    if not isinstance(batch, dict) or not all(key in batch for key in LM_KEYS):
        where = f"{split}.{part}" if part else split
        raise ValueError(
            f"this trainer needs '{where}' batches, got keys {sorted(inputs)}: "
            f"train on {experiment}"
        )
    return {key: batch[key] for key in LM_KEYS}


class PaperBaseline(GradDiff):
    """``loss = gamma * forget + alpha * retain``; retain is GradDiff's NLL or KL to the
    starting model. Subclasses define ``compute_forget_loss``."""

    def __init__(self, gamma=1.0, alpha=1.0, retain_loss_type="NLL", *args, **kwargs):
        if retain_loss_type not in RETAIN_LOSS_TYPES:
            raise ValueError(
                f"retain_loss_type must be one of {RETAIN_LOSS_TYPES}, "
                f"got {retain_loss_type!r}"
            )
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
