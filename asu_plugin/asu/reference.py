"""ASU's view of the starting model: plain (the retain reference) or as the forget-teacher,
its attention smoothed at τ."""

from asu_plugin.asu.smoothing import AttentionSmoothing
from asu_plugin.core.logits import CHUNK_SIZE
from asu_plugin.core.start import StartingModel


class Reference(StartingModel):
    """``model`` as it was when unlearning started, plain or with attention temperature τ.

    ``model`` is a frozen copy; with ``adapter_base=True``, a ``PeftModel`` student whose
    adapter-disabled base is the start. ``temperature``: τ (with ``layers``) or a
    ``SmoothingSpec`` the trainer checked.
    """

    def __init__(
        self, model, temperature, layers=None, adapter_base=False, chunk_size=CHUNK_SIZE
    ):
        super().__init__(model, adapter_base, chunk_size)
        self.smoothing = AttentionSmoothing(model, temperature, layers)

    def _teacher(self, smoothed):
        return self.smoothing if smoothed else None

    def logits(self, inputs, smoothed):
        """Logits of the starting model (the forget-teacher if ``smoothed``)."""
        return super().logits(inputs, self._teacher(smoothed))

    def kl(self, model, inputs, smoothed):
        """KL of ``model`` to the starting model (the τ-teacher if ``smoothed``) at label
        tokens, averaged per sequence, then over sequences; and ``model``'s outputs."""
        return super().kl(model, inputs, self._teacher(smoothed))
