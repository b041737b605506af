"""The pages say what the plugin registers: the trainer tables of the README and
docs/methods.md, what moves upstream and the community recipes."""

from pathlib import Path

import pytest

from asu_plugin.registration import ENTRIES, TRAINERS
from asu_plugin.upstream import CONTRIBUTIONS, HOMES

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "docs" / "methods.md"]


def first_column(text, header):
    """The first cells of the markdown table whose header row starts with ``| header |``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    rows = []
    for line in lines[start + 2 :]:  # past the header and |---| rows
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1].strip().strip("`"))
    return rows


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_trainer_table_is_what_the_plugin_registers(page):
    listed = first_column(page.read_text(), "trainer")
    assert sorted(listed) == sorted(TRAINERS), f"{page.name}: {listed}"


def test_every_registered_name_moves_upstream_with_exactly_one_method():
    moved = [name for c in CONTRIBUTIONS.values() for name in c.entries]
    registered = [name for _, entries in ENTRIES.values() for name in entries]
    assert sorted(moved) == sorted(registered)
    modules = {t.split(":")[0] for _, e in ENTRIES.values() for t in e.values()}
    assert modules <= set(HOMES)


def test_community_recipes_name_their_methods_trainers():
    """community/methods/<M>/ of each method's branch names every trainer it adds."""
    trainers = set(ENTRIES["trainer"][1])
    for contribution in CONTRIBUTIONS.values():
        if contribution.community:
            folder = ROOT / "community" / "methods" / contribution.community
            text = (folder / "README.md").read_text()
            named = [t for t in contribution.entries if t in trainers]
            assert named and all(f"`{t}`" in text for t in named), folder
            assert (folder / "run.sh").is_file()
