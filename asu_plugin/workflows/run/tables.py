"""Markdown tables for results files."""


def cell(value, digits=3):
    """A number to ``digits`` decimals, ``n/a`` for a missing one, anything else as is."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header, rows, digits=3):
    """A markdown table: ``header`` names the columns, each row gives a value per column."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(cell(v, digits) for v in row) + " |" for row in rows]
    return "\n".join(lines)
