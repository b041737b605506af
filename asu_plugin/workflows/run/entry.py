"""How a workflow starts and stops: every missing or bad setting named at once (exit 2),
a stop while running said in one line (exit 1).

A workflow's Hydra config is composed from the command line first, as ``@hydra.main`` will
compose it; its ``???`` settings and its own check (``check(cfg)`` raising ``BadSettings``)
are reported together with an example command, before Hydra or anything else runs.
``@workflow(...)`` makes a workflow's ``main`` so.
"""

import functools
import re
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    InterpolationResolutionError,
    MissingMandatoryValue,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


class WorkflowError(Exception):
    """A workflow cannot go on; the message says why and what to do."""


class BadSettings(WorkflowError, ValueError):
    """Settings a workflow cannot run with: ``problems`` maps each to what is wrong."""

    def __init__(self, problems):
        self.problems = dict(problems)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.problems.items()))


def checked(checks):
    """``(values, problems)``: each ``setting -> check()`` run, a ValueError, TypeError
    or OSError kept as that setting's problem; a check that reads a missing (``???``)
    (or absent) setting is skipped: that one is reported by itself."""
    values, problems = {}, {}
    for setting, check in checks.items():
        try:
            values[setting] = check()
        except (
            MissingMandatoryValue,
            InterpolationResolutionError,
            ConfigAttributeError,
        ):
            continue
        except BadSettings as error:
            problems.update(error.problems)
        except (ValueError, TypeError, OSError) as error:
            problems[setting] = str(error).splitlines()[0]
    return values, problems


def _missing(cfg, descriptions):
    return {
        key: "missing" + (f" ({descriptions[key]})" if descriptions.get(key) else "")
        for key in cfg
        if OmegaConf.is_missing(cfg, key)
    }


def _descriptions(config_file):
    """``key -> comment`` of the config's ``key: ??? # comment`` lines."""
    lines = Path(config_file).read_text().splitlines()
    found = (
        re.match(r"\s*-?\s*(\w+): \?\?\?\s*(?:#\s*(.*))?$", line) for line in lines
    )
    return {m[1]: m[2] for m in found if m}


def quiet_hydra():
    """Hide the deprecation notices Hydra's own code raises (hydra-core 1.3 under
    omegaconf >= 2.4: ``register_new_resolver()``, implicit conversions): a workflow's
    output is its own, and the user can act on none of them."""
    for category in (UserWarning, DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=r"hydra\.")


def check_settings(workflow, argv, check, example, groups=()):
    """Exit 2 naming every missing or bad setting of ``configs/<workflow>/default.yaml``
    under the overrides ``argv``, with ``example``; nothing when all are good.

    ``check(cfg)`` raises ``BadSettings``; ``groups``: config groups (e.g. ``model``)
    that may be missing or unknown, reported as settings.
    """
    if any(arg.startswith("-") for arg in argv):  # Hydra's own flags: --help, --cfg, -m
        return
    folder = CONFIGS / workflow
    problems, overrides = {}, list(argv)
    with (
        initialize_config_dir(str(folder), version_base=None),
        warnings.catch_warnings(),
    ):
        # a missing host checkout is reported as the missing model config, not as Hydra's
        # warning that its search-path folder "is not available"
        warnings.filterwarnings(
            "ignore", message=".*is not available", category=UserWarning
        )
        try:
            cfg = compose("default", overrides)
        except HydraException as error:
            bad = [g for g in groups if f"'{g}" in str(error)]
            if not bad:
                _exit(workflow, {"command line": str(error).splitlines()[0]}, example)
            for group in bad:
                given = [o for o in overrides if o.startswith(f"{group}=")]
                problems[group] = (
                    f"no config {given[0]!r}" if given else "missing"
                ) + f" ({str(error).splitlines()[0]})"
                overrides = [o for o in overrides if o not in given] + [f"~{group}"]
            cfg = compose("default", overrides)
    problems |= _missing(cfg, _descriptions(folder / "default.yaml"))
    problems |= checked({"settings": lambda: check(cfg)})[1]
    if problems:
        _exit(workflow, problems, example)


def _exit(workflow, problems, example):
    count = len(problems)
    lines = [
        f"{workflow}: {count} setting{'s' * (count > 1)} missing or bad, nothing ran:",
        *(f"  {key}: {problem}" for key, problem in problems.items()),
        "For example:",
        f"  {example}",
        f"All settings and their defaults: {CONFIGS / workflow / 'default.yaml'}",
    ]
    print("\n".join(lines), file=sys.stderr)
    raise SystemExit(2)


@contextmanager
def stops(workflow):
    """A ``WorkflowError`` or ``ValueError`` inside ends the command in one line (exit 1)."""
    try:
        yield
    except (WorkflowError, ValueError) as error:
        raise SystemExit(f"{workflow} stopped: {error}") from None


def workflow(name, check, example, groups=()):
    """``@workflow(name, check, example)`` on ``run(cfg)``: a ``main()`` that checks the
    settings (``check_settings``), then runs ``run`` through Hydra with
    ``configs/<name>/default.yaml``, a stop inside said in one line (``stops``)."""

    def decorate(run):
        @functools.wraps(run)
        def stopping(cfg):
            with stops(name):
                return run(cfg)

        config = str(CONFIGS / name)
        hydra_main = hydra.main(
            version_base=None, config_path=config, config_name="default"
        )(stopping)

        def main():
            quiet_hydra()
            check_settings(name, sys.argv[1:], check, example, groups)
            hydra_main()

        return main

    return decorate
