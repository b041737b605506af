"""The benchmarks' report: metric columns, Pareto fronts, matched-utility tables, seed
spreads and their plot.

The scripts run as ``python benchmarks/<script>.py``: Python puts this folder first on
``sys.path``, and that is how they import this module and ``sweep`` (``from report import
...``); they import nothing else from each other.
"""

import json
import math
import statistics

from sweep import by_method, teachers

from asu_plugin.workflows.run.tables import markdown_table

# the host's TOFU forget metrics, the first columns of every results table
FORGET_COLUMNS = (
    "forget_Q_A_Prob",
    "forget_Q_A_ROUGE",
    "forget_truth_ratio",
    "forget_quality",
)


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


def finished(results, names):
    """name -> the point file's contents, for the names written so far."""
    files = {name: results / "points" / f"{name}.json" for name in names}
    return {n: json.loads(f.read_text()) for n, f in files.items() if f.is_file()}


def grid_points(methods):
    """Each method's grid points (seed 0): the best of several seeds of one point would
    read luck as a front, so the seeds' reruns are only in the seeds table."""
    return {
        method: [item for item in items if item[0].seed is None]
        for method, items in methods.items()
    }


def spread(values):
    """``mean ± sample sd`` of the values given (``None``: not measured), one value as it
    is, none as ``–``."""
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def classifier_lines(path):
    """One owner classifier's report: its command, held-out accuracy, how it attributes
    the two ends' greedy (and, when measured, sampled) forget answers."""
    report = json.loads(path.read_text())
    name = path.stem.removeprefix("attribution").removeprefix("_")
    lines = [f"\nClassifier `{name}`:\n"] if name else []
    lines += [
        f"`{report['command']}` (held-out texts never trained on; {report['train_rows']} "
        f"training texts, {report['cpu_seconds']:.0f} s CPU)\n",
        markdown_table(
            ["held-out texts", "rows", "accuracy"],
            [[k, v["rows"], v["accuracy"]] for k, v in report["held_out"].items()],
        ),
        "\nGreedy forget answers of the two ends (forget-owner probability = − reward):\n",
        markdown_table(
            ["model", "forget-owner prob", "top: forget owner", "top: other"],
            [
                [
                    n,
                    m["forget_owner_probability"],
                    m["top_forget_owner"],
                    m["top_other"],
                ]
                for n, m in report["models"].items()
            ],
        ),
    ]
    separation = report.get("separation")
    if separation:
        lines += [
            f"\nSampled forget answers ({separation['samples_per_model']} a model, DareU's "
            "way): ROC AUC of the forget-owner score, target against retain model, "
            f"{separation['auc']:.3f}; means {separation['target_mean']:.3f} and "
            f"{separation['retain_mean']:.3f}.",
        ]
    return lines


def dareu(results, files, done):
    """Each owner classifier's accuracy and attribution (``attribution.json``, then
    ``attribution_<name>.json``), and each DareU point's rewards."""
    paths = [results / "attribution.json", *sorted(results.glob("attribution_*.json"))]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        return []
    lines = ["\n## DareU: the owner classifier and the reward\n"]
    for path in paths:
        lines += classifier_lines(path)
    rows = []
    for point, _ in done:
        log = [s for s in files[point.name].get("train_log", []) if "reward" in s]
        by_epoch = {}  # each epoch's steps see every forget prompt once
        for step in log:
            by_epoch.setdefault(math.ceil(step["epoch"] - 1e-9), []).append(step)
        if by_epoch:
            rows.append(
                [
                    point.label,
                    len(log),
                    *(
                        " / ".join(
                            f"{statistics.mean(s[key] for s in steps):.3f}"
                            for steps in by_epoch.values()
                        )
                        for key in ("reward", "kl", "retain_loss")
                    ),
                ]
            )
    if rows:
        lines += [
            "\nThe reward curve: mean rollout reward (− forget-owner probability of the "
            "sampled answers), KL to the start on them and the retain term, per epoch "
            "(each epoch samples every forget prompt once):\n",
            markdown_table(
                ["point", "steps", "reward by epoch", "kl by epoch", "retain by epoch"],
                rows,
            ),
        ]
    return lines


class PointReport:
    """``results.md`` / ``.png`` of a benchmark that keeps a point file per run
    (``points/<name>.json``): every point, the forget-teachers, each method's Pareto front
    and matched-utility points (grid seed 0), the seeds of the front points, DareU's
    classifier and rewards, and sample answers."""

    def __init__(
        self, forget, utility, columns, fe, distance, references, matched, seeds, title
    ):
        self.forget, self.utility = forget, utility  # metric names
        self.columns, self.fe, self.distance = columns, fe, distance
        self.references = references  # their rows first, in this order
        self.matched = matched  # shares of the target's utility
        self.seeds, self.title = seeds, title

    def write(self, results, refs, points, header):
        """results.md and results.png from the point files written so far."""
        files = finished(results, [p.name for p in points])
        done = [(p, files[p.name]["metrics"]) for p in points if p.name in files]
        teacher_files = finished(results, [name for _, _, name in teachers(points)])
        teacher_scores = {
            tau: teacher_files[name]["metrics"]
            for tau, _, name in teachers(points)
            if name in teacher_files
        }
        methods = by_method(done, point=lambda item: item[0])
        grid = grid_points(methods)
        target_utility = refs["target"]["metrics"][self.utility]
        lines = [
            *header(refs["target"]["setup"], len(done)),
            *self.tables(refs, done, teacher_scores),
            *self.fronts(grid, target_utility),
            *self.seeded(methods, target_utility),
            *dareu(results, files, done),
            *self.sample_answers(results, refs, grid, target_utility),
        ]
        (results / "results.md").write_text("\n".join(lines) + "\n")
        plot_fronts(
            results / "results.png",
            grid,
            self.forget_of,
            self.utility_of,
            (f"{self.forget} (↓)", f"{self.utility} (↑)"),
            [
                (
                    "forget-teacher (τ)",
                    "k^",
                    [(None, m) for m in teacher_scores.values()],
                ),
                ("target (before)", "kx", [(None, refs["target"]["metrics"])]),
                ("retain model (goal)", "k*", [(None, refs["retain"]["metrics"])]),
            ],
            title=self.title,
        )

    def forget_of(self, item):
        return item[1][self.forget]

    def utility_of(self, item):
        return item[1][self.utility]

    def label_of(self, item):
        return item[0].label

    def tables(self, refs, done, teacher_scores):
        """Every point's scores and the forget-teacher's."""

        retain = refs["retain"]["metrics"]

        def cells(metrics):
            distance = [abs(metrics[c] - retain[c]) for c in self.distance]
            return [
                *(metrics.get(c) for c in self.columns),
                metrics.get(self.fe),
                *distance,
            ]

        distance = [f"\\|Δ {c}\\|" for c in self.distance]
        return [
            "## Every point\n",
            f"`{self.fe}`: the paper's FE without its entailment term (harmonic mean of 1 − ROUGE, "
            "1 − probability, truth ratio and token entropy of the forget answers); – where "
            "the point ran before it was measured. \\|Δ\\|: distance to the retain model, "
            "the goal (an over-forgetting point is far from it too).\n",
            markdown_table(
                ["method", "knob", *self.columns, self.fe, *distance],
                [
                    *(
                        [n, "–", *cells(refs[n]["metrics"])]
                        for n in self.references
                        if n in refs
                    ),
                    *([p.method, p.label, *cells(m)] for p, m in done),
                ],
            ),
        ] + (
            [
                "\n## Forget-teacher (the target with attention temperature τ, all layers)\n",
                markdown_table(
                    ["τ", *self.columns, self.fe, *distance],
                    [[tau, *cells(m)] for tau, m in sorted(teacher_scores.items())],
                ),
            ]
            if teacher_scores
            else []
        )

    def fronts(self, methods, target_utility):
        """Each method's Pareto front and its matched-utility points."""
        thresholds = [t * target_utility for t in self.matched]
        return [
            f"\n## Pareto fronts ({self.forget} ↓, {self.utility} ↑)\n",
            "Grid points (seed 0); the seeds' reruns are in the seeds table below.\n",
            *front_lines(methods, self.forget_of, self.utility_of, self.label_of),
            f"\n## Matched utility: lowest {self.forget} with {self.utility} ≥ a share of the "
            f"target's ({target_utility:.3f})\n",
            markdown_table(
                ["method", *(f"≥ {t:g}×" for t in self.matched)],
                matched_rows(
                    methods, self.forget_of, self.utility_of, self.label_of, thresholds
                ),
            ),
        ]

    def front_points(self, methods, target_utility):
        """Per method, the points a reading rests on: its lowest forget answer probability at
        ≥ 0.9× the target's utility, and its best forget quality (grid seed 0 only)."""
        chosen = {}
        for method, grid in grid_points(methods).items():
            picks = [
                best_at(grid, self.forget_of, self.utility_of, 0.9 * target_utility),
                max(grid, key=lambda item: item[1].get("forget_quality") or 0),
            ]
            points = {p[0].name: p[0] for p in picks if p is not None}
            chosen[method] = list(points.values())
        return chosen

    def seeded(self, methods, target_utility):
        """Mean ± sample standard deviation over the seeds of each method's front points."""
        runs = {p.name: m for items in methods.values() for p, m in items}
        columns = (
            self.forget,
            self.utility,
            "forget_quality",
            "forget_truth_ratio",
            self.fe,
        )
        rows = []
        for method, chosen in self.front_points(methods, target_utility).items():
            for point in chosen:
                seeds = [point, *(point.with_seed(s) for s in self.seeds)]
                found = [runs[p.name] for p in seeds if p.name in runs]
                rows.append(
                    [method, point.label, len(found)]
                    + [spread([m.get(c) for m in found]) for c in columns]
                )
        return [
            "\n## Seeds: each method's front points (lowest forget at ≥ 0.9× the target's "
            "utility; best forget quality), mean ± sd over the seeds run\n",
            "Seed = the host's training seed (data order; DareU's sampling too); the target, "
            "retain model and evaluation are the same. n = 1: one run, no spread.\n",
            markdown_table(["method", "point", "n", *columns], rows),
        ]

    def sample_answers(self, results, refs, methods, target_utility):
        """Two forget answers of the target and of each method's chosen point."""
        lines = [
            "\n## Sample forget answers (each method's lowest-forget point at ≥ 0.9× the "
            "target's utility, else its lowest-forget point)\n",
        ]
        chosen = {"target (before unlearning)": refs["target"]}
        for method, items in methods.items():
            point, _ = best_at(
                items, self.forget_of, self.utility_of, 0.9 * target_utility
            ) or min(items, key=self.forget_of)
            chosen[f"{method} {point.label}"] = finished(results, [point.name])[
                point.name
            ]
        for title, result in chosen.items():
            lines.append(f"**{title}**\n")
            for sample in result["samples"]:
                lines.append(
                    f"- Q: {sample['question']}\n  - truth: {sample['answer']}\n"
                    f"  - answer: {sample['generation'].strip()!r}"
                )
            lines.append("")
        return lines
