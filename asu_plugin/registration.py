"""Registration of the ASU trainers and model handler in open-unlearning's registries.

Only touches host modules that are already imported (``trainer`` and ``model`` from
open-unlearning's ``src/``), so it is safe to call from any Hydra application.
"""

import sys

TRAINERS = ("ASU_GD", "ASU_KL", "ASU_RMU")
MODEL_HANDLERS = ("AttentionSmoothedForCausalLM",)


def _host_module(name, registry):
    module = sys.modules.get(name)
    return module if isinstance(getattr(module, registry, None), dict) else None


def register_loaded() -> list[str]:
    """Register into whichever host registries are loaded; return what was registered."""
    registered = []
    trainer = _host_module("trainer", "TRAINER_REGISTRY")
    if trainer is not None:
        from asu_plugin import trainers

        for name in TRAINERS:
            trainer.TRAINER_REGISTRY[name] = getattr(trainers, name)
        registered += TRAINERS
    model = _host_module("model", "MODEL_REGISTRY")
    if model is not None:
        from asu_plugin import models

        for name in MODEL_HANDLERS:
            model.MODEL_REGISTRY[name] = getattr(models, name)
        registered += MODEL_HANDLERS
    return registered


def register() -> None:
    """Register ASU into open-unlearning; import the host's ``trainer`` and ``model`` first."""
    missing = [
        name
        for name, registry in (
            ("trainer", "TRAINER_REGISTRY"),
            ("model", "MODEL_REGISTRY"),
        )
        if _host_module(name, registry) is None
    ]
    if missing:
        raise RuntimeError(
            f"open-unlearning's {' and '.join(missing)} module(s) are not loaded: "
            "run from the host (src/ on sys.path) and `import trainer, model` "
            "before asu_plugin.register()"
        )
    register_loaded()
