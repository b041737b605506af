"""The benchmarks' report: metric columns, Pareto fronts, matched-utility tables, seed
spreads and their plot.

The scripts run as ``python benchmarks/<script>.py``: Python puts this folder first on
``sys.path``, and that is how they import this module and ``sweep`` (``from report import
...``); they import nothing else from each other.
"""

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
