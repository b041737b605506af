"""Hydra plugin: adds asu-plugin's configs, its settings check, and registers ASU in a
running open-unlearning."""

import logging

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

logger = logging.getLogger(__name__)


class ASUSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="asu-plugin", path="pkg://asu_plugin.configs")
        # first, so that its hydra/env/default.yaml (Hydra's own is empty) adds the
        # settings check's callback; the folder holds nothing else
        search_path.prepend(
            provider="asu-plugin-check", path="pkg://asu_plugin.host_check"
        )
        try:
            from asu_plugin.registration import register_loaded

            register_loaded()
        except Exception as e:  # never break the Hydra app that discovered us
            logger.warning(f"asu-plugin: could not register ASU: {e!r}")
