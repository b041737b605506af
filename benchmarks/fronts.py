"""Forget-vs-utility comparisons: Pareto fronts, matched-utility points and their plot."""


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
