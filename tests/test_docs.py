"""The pages say what the plugin registers: the trainer tables of the README and
docs/methods.md, the upstream steps and the community recipes."""

from pathlib import Path

import pytest

from asu_plugin.registration import ENTRIES, TRAINERS

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


def test_upstream_steps_register_every_trainer():
    docs = "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    missing = [t for t in TRAINERS if f"_register_trainer({t})" not in docs]
    assert not missing, f"no upstream step registers {missing} in docs/"


def test_community_recipes_name_their_methods_trainers():
    """community/methods/<M>/ covers the trainers of the package asu_plugin/<m>/."""
    recipes = {p.name.lower(): p for p in (ROOT / "community" / "methods").iterdir()}
    checked = 0
    for trainer, target in ENTRIES["trainer"][1].items():
        package = target.split(":")[0].split(".")[1]
        if package in recipes:
            text = (recipes[package] / "README.md").read_text()
            assert f"`{trainer}`" in text, f"{recipes[package]} misses {trainer}"
            checked += 1
    assert checked, "no community recipe matched a trainer's package"
