"""The benchmarks' grids as data: a sweep file (``sweeps/<name>.yaml``) lists its points,
one a line, in the order they run; ``load`` reads one into ``Point`` s.
"""

import re
from pathlib import Path
from typing import NamedTuple

from omegaconf import OmegaConf

SWEEPS = Path(__file__).parent / "sweeps"
SYMBOLS = {"temperature": "τ", "gamma": "γ", "alpha": "α", "beta": "β"}
POINT_FIELDS = ("method", "lr", "epochs", "seed", "classifier")  # the rest: method_args


# the TOFU experiment config of each method not run with the host's default one
EXPERIMENTS = {"ME_GD": "me", "IDK_AP": "idk_ap", "DareU": "dareu"}


class Point(NamedTuple):
    """One unlearning run of a sweep: the method, its learning rate and own knobs, its
    epochs (``None``: the benchmark's), its training seed (``None``: the host's, 0) and,
    for DareU, the sweep's owner classifier it uses (``None``: the sweep's default)."""

    method: str
    lr: float
    method_args: dict
    epochs: int | None = None
    seed: int | None = None
    classifier: str | None = None

    @property
    def knobs(self):
        extra = {k: getattr(self, k) for k in ("classifier", "epochs", "seed")}
        return {
            "lr": f"{self.lr:g}",
            **self.method_args,
            **{k: v for k, v in extra.items() if v is not None},
        }

    def with_seed(self, seed):
        """The same run with another training seed (data order, sampling)."""
        return self._replace(seed=seed)

    @property
    def label(self):
        return " ".join(f"{SYMBOLS.get(k, k)}={v}" for k, v in self.knobs.items())

    @property
    def name(self):
        """Its folder's (and point file's) name."""
        knobs = "_".join(f"{k}{v}" for k, v in self.knobs.items())
        return re.sub(r"[^\w-]+", "", f"{self.method}_{knobs}".replace(".", "p"))

    def definition(self):
        """All that defines the run, as a results record keeps it."""
        return {k: v for k, v in self._asdict().items() if v is not None}

    def overrides(self):
        """``src/train.py`` overrides: the method's TOFU experiment with its knobs."""
        experiment = "asu" if self.method.startswith("ASU") else "default"
        experiment = EXPERIMENTS.get(self.method, experiment)
        seed = [] if self.seed is None else [f"trainer.args.seed={self.seed}"]
        return [
            "--config-name=unlearn.yaml",
            f"experiment=unlearn/tofu/{experiment}",
            f"trainer={self.method}",
            *(f"trainer.method_args.{k}={v}" for k, v in self.method_args.items()),
            *seed,
        ]


def teachers(points):
    """The forget-teacher of each (τ, layers) the points use, in order of first use:
    ``(τ, layers, name)``, ``layers`` None for all."""
    found = {}
    for point in points:
        if "temperature" in point.method_args:
            tau, layers = (
                point.method_args["temperature"],
                point.method_args.get("layers"),
            )
            name = f"teacher_t{tau:g}" + ("" if layers is None else f"_layers{layers}")
            found.setdefault(re.sub(r"\W+", "", name.replace(".", "p")), (tau, layers))
    return [(tau, layers, name) for name, (tau, layers) in found.items()]


def point(entry) -> Point:
    """A sweep file's entry: ``method``, ``lr``, optionally ``epochs``, ``seed`` and
    ``classifier``; every other key a method argument, in the order written."""
    if "method" not in entry or "lr" not in entry:
        raise ValueError(f"a sweep point needs a method and an lr, got {entry}")
    args = {k: v for k, v in entry.items() if k not in POINT_FIELDS}
    return Point(
        entry["method"],
        float(entry["lr"]),
        args,
        entry.get("epochs"),
        entry.get("seed"),
        entry.get("classifier"),
    )


def by_method(items, point=lambda item: item):
    """Method -> its items (points, or anything ``point`` reads a point from), in order."""
    methods = {}
    for item in items:
        methods.setdefault(point(item).method, []).append(item)
    return methods


class Sweep(NamedTuple):
    name: str
    points: list  # of Point, in run order
    settings: dict  # the file's other keys


def load(name) -> Sweep:
    """``sweeps/<name>.yaml``; one that ``extends`` another has that one's points first and
    its settings, its own added or in their place."""
    path = SWEEPS / f"{name}.yaml"
    if not path.is_file():
        found = sorted(p.stem for p in SWEEPS.glob("*.yaml"))
        raise ValueError(f"no sweep {name!r}; the sweeps: {found}")
    data = OmegaConf.to_container(OmegaConf.load(path))
    points = [point(entry) for entry in data.pop("points")]
    if "extends" in data:
        base = load(data.pop("extends"))
        points, data = base.points + points, {**base.settings, **data}
    names = [p.name for p in points]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{path}: points {twice} appear twice")
    return Sweep(name, points, data)
