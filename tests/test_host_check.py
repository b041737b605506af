"""A bad setting of a trainer the plugin registers is refused by the host's own
``src/train.py`` once its config is composed: before any model loads, nothing written."""

import pytest
from hydra import compose, initialize_config_dir

from asu_plugin.core.checks import setting_checks, setting_problems
from asu_plugin.host_check import config_problems
from asu_plugin.registration import TRAINERS, trainer_class
from asu_plugin.workflows.run.host import host_module, run_host

pytestmark = pytest.mark.host
BAD = {  # setting -> a value its check refuses
    "gamma": "nan",
    "alpha": "-1",
    "retain_loss_type": "MSE",
    "logits_chunk_size": "0",
    "temperature": "0",
    "peft": "{r: 8}",
    "beta": "-1",
    "num_samples": "1",
    "max_new_tokens": "0",
    "steps_per_rollout": "0",
    "clip": "0",
    "classifier": "/nowhere",
}
NO_CLASSIFIER = "DareU needs classifier=<owner classifier folder>"


@pytest.fixture(scope="module")
def host_configs(host):
    host_module(host, "trainer")  # the trainers import the host's trainer package
    with initialize_config_dir(str(host / "configs"), version_base=None):
        yield lambda *overrides: compose("unlearn.yaml", list(overrides))


def composed(host_configs, trainer, *overrides):
    return host_configs(
        "experiment=unlearn/tofu/default", f"trainer={trainer}", *overrides
    )


@pytest.mark.parametrize("trainer", TRAINERS)
def test_every_bad_setting_of_every_trainer_is_named(host_configs, trainer):
    problems = config_problems(composed(host_configs, trainer))
    if trainer == "DareU":  # its shipped config leaves the classifier to the user
        assert list(problems) == ["trainer.method_args.classifier"]
        assert problems["trainer.method_args.classifier"].startswith(NO_CLASSIFIER)
    else:
        assert problems == {}
    checks = setting_checks(trainer_class(trainer))
    assert checks, f"{trainer} declares no SETTINGS"
    for name in checks:
        bad = f"++trainer.method_args.{name}={BAD[name]}"
        problems = config_problems(composed(host_configs, trainer, bad))
        assert f"trainer.method_args.{name}" in problems, (trainer, name, problems)


def test_a_misspelt_setting_is_named_with_its_likely_meaning(host_configs):
    cfg = composed(host_configs, "ASU_KL", "++trainer.method_args.temprature=3")
    assert config_problems(cfg) == {
        "trainer.method_args.temprature": (
            "ASU_KL takes no setting 'temprature' (did you mean 'temperature'?)"
        )
    }


def test_a_host_trainer_is_left_to_the_host(host_configs):
    assert trainer_class("GradDiff") is None
    assert config_problems(composed(host_configs, "GradDiff")) == {}


@pytest.mark.parametrize(
    "trainer, name, value", [("ME_GD", "gamma", float("nan")), ("IDK_AP", "beta", 0)]
)
def test_the_trainers_own_check_is_the_same(host_configs, trainer, name, value):
    cls = trainer_class(trainer)
    message = setting_problems(cls, {name: value})[name]
    with pytest.raises(ValueError) as error:  # before the host's trainer needs a model
        cls(**{name: value})
    assert str(error.value) == message


def test_the_hosts_train_command_stops_before_any_model_loads(host, tmp_path):
    overrides = [
        "--config-name=unlearn.yaml",
        "experiment=unlearn/tofu/default",
        "trainer=ASU_KL",
        "task_name=bad",
        "model.model_args.pretrained_model_name_or_path=/no/such/model",
        "trainer.method_args.temperature=-1",
        "++trainer.method_args.gama=0.1",
        f"paths.root_dir={tmp_path}",
    ]
    result = run_host(host, "train.py", overrides, tmp_path, capture_output=True)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.splitlines()[-3:] == [
        "trainer ASU_KL: 2 bad settings, nothing ran:",
        "  trainer.method_args.temperature: attention temperature must be a finite "
        "number > 0 (τ > 1 smooths, τ = 1 is the model itself), got -1",
        "  trainer.method_args.gama: ASU_KL takes no setting 'gama' (did you mean "
        "'gamma'?)",
    ]
    assert not (tmp_path / "saves").exists()
