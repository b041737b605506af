"""What the plugin adds to open-unlearning's registries, and the code that adds it.

Each host registry lists its entries as ``name: "module:attribute"``; a method's module is
imported only when its host registry is loaded. Only host modules that are already
imported are touched (``trainer``, ``model``, ``data`` and ``evals.metrics`` from
open-unlearning's ``src/``), so this is safe to call from any Hydra application.
"""

import importlib
import sys

# host module -> (its registry, {registered name: "our module:attribute"})
ENTRIES = {
    "trainer": (
        "TRAINER_REGISTRY",
        {
            "ASU_GD": "asu_plugin.asu.trainers:ASU_GD",
            "ASU_KL": "asu_plugin.asu.trainers:ASU_KL",
            "ASU_RMU": "asu_plugin.asu.trainers:ASU_RMU",
            "DareU": "asu_plugin.dareu.trainer:DareU",
            "ME_GD": "asu_plugin.baselines.me:ME_GD",
            "ME_KL": "asu_plugin.baselines.me:ME_KL",
            "IDK_GD": "asu_plugin.baselines.idk:IDK_GD",
            "IDK_KL": "asu_plugin.baselines.idk:IDK_KL",
            "IDK_AP": "asu_plugin.baselines.idk:IDK_AP",
        },
    ),
    "model": (
        "MODEL_REGISTRY",
        {
            "AttentionSmoothedForCausalLM": "asu_plugin.asu.models:AttentionSmoothedForCausalLM"
        },
    ),
    "data": (
        "DATASET_REGISTRY",
        {"IdkQADataset": "asu_plugin.baselines.data:IdkQADataset"},
    ),
    "evals.metrics": (
        "METRICS_REGISTRY",
        {
            "token_entropy": "asu_plugin.metrics.paper:token_entropy",
            "cosine_similarity": "asu_plugin.metrics.paper:cosine_similarity",
            "entailment_rate": "asu_plugin.metrics.paper:entailment_rate",
            "forget_efficacy": "asu_plugin.metrics.paper:forget_efficacy",
            "forget_efficacy_no_nli": "asu_plugin.metrics.paper:forget_efficacy_no_nli",
        },
    ),
}
TRAINERS = tuple(ENTRIES["trainer"][1])
REQUIRED = ("trainer", "model")  # register() refuses to run without these


def _host_registry(module_name, registry):
    module = sys.modules.get(module_name)
    found = getattr(module, registry, None)
    return found if isinstance(found, dict) else None


def _load(target):
    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)


def trainer_class(name):
    """The plugin's trainer class registered as ``name``, or None (not the plugin's)."""
    target = ENTRIES["trainer"][1].get(name)
    return _load(target) if target else None


def register_loaded() -> list[str]:
    """Register into whichever host registries are loaded; return what was registered."""
    registered = []
    for module_name, (registry_name, entries) in ENTRIES.items():
        registry = _host_registry(module_name, registry_name)
        if registry is None:
            continue
        for name, target in entries.items():
            registry[name] = _load(target)
            registered.append(name)
    return registered


def register() -> None:
    """Register the plugin into open-unlearning; import the host's ``trainer`` and ``model``
    first."""
    missing = [m for m in REQUIRED if _host_registry(m, ENTRIES[m][0]) is None]
    if missing:
        raise RuntimeError(
            f"open-unlearning's {' and '.join(missing)} module(s) are not loaded: "
            "run from the host (src/ on sys.path) and `import trainer, model` "
            "before asu_plugin.register()"
        )
    register_loaded()
