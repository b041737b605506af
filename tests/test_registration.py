"""Registration and Hydra discovery, without open-unlearning."""

import logging
import sys
from types import ModuleType

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin

from asu_plugin import register
from asu_plugin.asu.models import AttentionSmoothedForCausalLM
from asu_plugin.registration import ENTRIES, register_loaded

# our modules that import the host's (they import once the host is loaded)
PLUGIN_MODULES_ON_THE_HOST = {
    target.split(":")[0]
    for _, entries in ENTRIES.values()
    for target in entries.values()
} - {"asu_plugin.asu.models"}


@pytest.fixture
def no_host(monkeypatch):
    """Hide open-unlearning's packages (and what imported them) from sys.modules."""
    hosts = {module.split(".")[0] for module in ENTRIES}
    for name in list(sys.modules):
        if name.split(".")[0] in hosts or name in PLUGIN_MODULES_ON_THE_HOST:
            monkeypatch.delitem(sys.modules, name)
    return monkeypatch


def fake_module(name, **attrs):
    module = ModuleType(name)
    module.__dict__.update(attrs)
    return module


def test_register_without_host_names_what_is_missing(no_host):
    with pytest.raises(RuntimeError, match="trainer and model module.*not loaded"):
        register()


def test_register_loaded_imports_no_trainer_module(no_host):
    assert register_loaded() == []
    assert "trainer" not in sys.modules and "model" not in sys.modules


def test_model_handler_registers_alone_and_idempotently(no_host):
    registry = {}
    no_host.setitem(sys.modules, "model", fake_module("model", MODEL_REGISTRY=registry))
    no_host.setitem(sys.modules, "trainer", fake_module("trainer"))  # someone else's
    assert register_loaded() == ["AttentionSmoothedForCausalLM"]
    assert register_loaded() == ["AttentionSmoothedForCausalLM"]
    assert registry == {"AttentionSmoothedForCausalLM": AttentionSmoothedForCausalLM}


def test_hydra_discovers_the_search_path_plugin():
    names = [p.__name__ for p in Plugins.instance().discover(SearchPathPlugin)]
    assert "ASUSearchPathPlugin" in names


def compose_in_foreign_app(tmp_path, overrides):
    """A Hydra app of its own with a stand-in for the host's trainer/finetune.yaml."""
    (tmp_path / "trainer").mkdir()
    (tmp_path / "trainer" / "finetune.yaml").write_text(
        "handler: FinetuneTrainer\nargs:\n  learning_rate: 1.0e-05\n"
    )
    (tmp_path / "config.yaml").write_text("defaults:\n  - trainer: finetune\n")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(tmp_path), version_base=None):
        return compose("config", overrides=overrides)


def test_trainer_configs_chain_to_the_hosts_finetune(tmp_path, no_host):
    cfg = compose_in_foreign_app(tmp_path, ["trainer=ASU_KL"])
    assert cfg.trainer.handler == "ASU_KL"
    assert cfg.trainer.args.learning_rate == 1e-5
    assert dict(cfg.trainer.method_args) == {
        "temperature": 2.3,
        "layers": None,
        "gamma": 0.1,
        "alpha": 1.0,
        "retain_loss_type": "KL",
        "peft": None,
        "logits_chunk_size": 256,
    }


def test_plugin_never_raises_inside_another_app(tmp_path, no_host, caplog):
    def broken():
        raise ImportError("a `trainer` module that is not open-unlearning's")

    no_host.setattr("asu_plugin.registration.register_loaded", broken)
    with caplog.at_level(logging.WARNING):
        cfg = compose_in_foreign_app(tmp_path, ["trainer=ASU_GD"])
    assert cfg.trainer.handler == "ASU_GD"
    assert "could not register ASU" in caplog.text
