"""Runs a host script (``python without_plugin.py SCRIPT ARGS...``) in this environment
with asu-plugin made unimportable: as where it is not installed."""

import importlib.abc
import runpy
import sys
import warnings

HIDDEN = ("asu_plugin", "hydra_plugins.asu_plugin")


class Hidden(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == h or name.startswith(h + ".") for h in HIDDEN):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, Hidden())
# Hydra's plugin scanner finds the folder and warns that it cannot import it
warnings.filterwarnings("ignore", message=".*asu_plugin.*")
sys.argv = sys.argv[1:]
sys.path.insert(0, str(__import__("pathlib").Path(sys.argv[0]).parent))
runpy.run_path(sys.argv[0], run_name="__main__")
