from transformers import AutoModelForCausalLM

from asu_plugin.asu.smoothing import smooth_attention


class AttentionSmoothedForCausalLM:
    """Model handler that loads a causal LM with attention temperature τ: ASU's
    forget-teacher, e.g. to evaluate it with open-unlearning's ``src/eval.py``.

    ``model.model_handler=AttentionSmoothedForCausalLM
    +model.model_args.attention_temperature=2.3``
    (optionally ``+model.model_args.attention_layers=[6,7,8]``).
    """

    @classmethod
    def from_pretrained(
        cls, *args, attention_temperature=None, attention_layers=None, **kwargs
    ):
        if attention_temperature is None:
            raise ValueError(
                f"{cls.__name__} needs model_args.attention_temperature (τ > 0)"
            )
        model = AutoModelForCausalLM.from_pretrained(*args, **kwargs)
        smooth_attention(model, attention_temperature, attention_layers)
        return model
