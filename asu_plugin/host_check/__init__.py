"""The plugin's trainer settings checked when open-unlearning has composed its config: a
Hydra callback that ``hydra/env/default.yaml`` here adds to every Hydra application (the
search-path plugin puts this folder first). A bad ``trainer.method_args`` of a trainer the
plugin registers stops ``src/train.py`` there, before any model loads or any folder is
made: each bad setting named, exit 2."""

import sys

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from asu_plugin.core.checks import setting_problems
from asu_plugin.registration import trainer_class


def config_problems(config) -> dict:
    """``trainer.method_args.<setting> -> what is wrong`` of ``config``; nothing when its
    trainer is not the plugin's."""
    handler = OmegaConf.select(config, "trainer.handler")
    cls = trainer_class(handler) if isinstance(handler, str) else None
    if cls is None:
        return {}
    given = OmegaConf.select(config, "trainer.method_args", default=None) or {}
    method_args = {  # a missing (???) value is checked as none given
        key: None if OmegaConf.is_missing(given, key) else given[key] for key in given
    }
    method_args = OmegaConf.to_container(OmegaConf.create(method_args), resolve=True)
    problems = setting_problems(cls, method_args)
    return {f"trainer.method_args.{k}": v for k, v in problems.items()}


class SettingsCheck(Callback):
    def on_run_start(self, config, **kwargs):
        check(config)

    def on_multirun_start(self, config, **kwargs):
        check(config)


def check(config):
    problems = config_problems(config)
    if problems:
        handler = config.trainer.handler
        count = len(problems)
        lines = [
            f"trainer {handler}: {count} bad setting{'s' * (count > 1)}, nothing ran:",
            *(f"  {key}: {problem}" for key, problem in problems.items()),
        ]
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2)
