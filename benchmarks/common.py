"""What the benchmark scripts share: sweep points, metric columns, the forget-teachers of a
sweep, Pareto fronts and matched-utility tables, and their plot.

The scripts run as ``python benchmarks/<script>.py``: Python puts this folder first on
``sys.path``, and that is how they import this module (``from common import ...``); they
import nothing else from each other.
"""

import re
from typing import NamedTuple

SYMBOLS = {"temperature": "τ", "gamma": "γ", "alpha": "α", "beta": "β"}
# the host's TOFU forget metrics, the first columns of every results table
FORGET_COLUMNS = (
    "forget_Q_A_Prob",
    "forget_Q_A_ROUGE",
    "forget_truth_ratio",
    "forget_quality",
)


# the TOFU experiment config of each method not run with the host's default one
EXPERIMENTS = {"ME_GD": "me", "IDK_AP": "idk_ap", "DareU": "dareu"}


class Point(NamedTuple):
    """One unlearning run of a sweep: the method, its learning rate and own knobs, its
    epochs (``None``: the benchmark's) and its training seed (``None``: the host's, 0)."""

    method: str
    lr: float
    method_args: dict
    epochs: int | None = None
    seed: int | None = None

    @property
    def knobs(self):
        epochs = {} if self.epochs is None else {"epochs": self.epochs}
        seed = {} if self.seed is None else {"seed": self.seed}
        return {"lr": f"{self.lr:g}", **self.method_args, **epochs, **seed}

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


def asu(method, temperature, lr, gamma=1, **method_args):
    """An ASU point: τ and the forget weight γ first."""
    return Point(
        method, lr, {"temperature": temperature, "gamma": gamma, **method_args}
    )


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


def pareto(points, forget, utility):
    """The points no other point beats on both lower ``forget(p)`` and higher ``utility(p)``,
    by increasing utility."""
    front = [
        p
        for p in points
        if not any(
            forget(q) <= forget(p)
            and utility(q) >= utility(p)
            and (forget(q), utility(q)) != (forget(p), utility(p))
            for q in points
        )
    ]
    return sorted(front, key=utility)


def best_at(points, forget, utility, threshold):
    """The point of lowest ``forget`` among those with ``utility`` ≥ ``threshold``, or None."""
    eligible = [p for p in points if utility(p) >= threshold]
    return min(eligible, key=forget, default=None)


def front_lines(groups, forget, utility, label):
    """A markdown line per group (name -> points): its Pareto front, each point as
    ``label (forget, utility)``."""
    return [
        f"- {name}: "
        + ", ".join(
            f"{label(p)} ({forget(p):.3f}, {utility(p):.3f})"
            for p in pareto(points, forget, utility)
        )
        for name, points in groups.items()
    ]


def matched_rows(groups, forget, utility, label, thresholds):
    """A table row per group: at each utility threshold, its lowest forget and the label."""
    rows = []
    for name, points in groups.items():
        best = [best_at(points, forget, utility, t) for t in thresholds]
        rows.append(
            [
                name,
                *("–" if b is None else f"{forget(b):.3f} ({label(b)})" for b in best),
            ]
        )
    return rows


def plot_fronts(path, groups, forget, utility, labels, marks=(), title=""):
    """One colour per group (name -> points), its Pareto front as a line; ``marks``:
    (label, style, points) drawn as they are, e.g. references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, points in groups.items():
        (line,) = ax.plot(
            [utility(p) for p in points], [forget(p) for p in points], "o", alpha=0.5
        )
        front = pareto(points, forget, utility)
        ax.plot(
            [utility(p) for p in front],
            [forget(p) for p in front],
            "-",
            color=line.get_color(),
            label=name,
        )
    for label, style, points in marks:
        ax.plot(
            [utility(p) for p in points],
            [forget(p) for p in points],
            style,
            markersize=9,
            label=label,
        )
    ax.set(xlabel=labels[1], ylabel=labels[0], title=title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
