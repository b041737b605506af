"""The house's import rules, read from every module's imports: one shared layer under the
methods; a method imports that layer and its own folder, never another method; workflows
use the methods' public names (their packages), never their modules. Inside workflows the
run layer imports no other room, the builders only the run layer, and a workflow the two
and its own module or folder, never another workflow."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "asu_plugin"
METHODS = ("asu", "dareu", "baselines", "metrics")
CORE = "asu_plugin.core"


def room(path):
    """The folder of ``asu_plugin`` a module lives in ("" for the package's own files)."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else ""


def imported(path):
    """``(line, module)`` of each ``asu_plugin`` module the file imports."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            if name == "asu_plugin" or name.startswith("asu_plugin."):
                yield node.lineno, name


def within(module, *packages):
    return any(module == p or module.startswith(p + ".") for p in packages)


def allowed(where, module):
    if where == "core":
        return within(module, CORE)
    if where in METHODS:
        return within(module, CORE, f"asu_plugin.{where}")
    if where == "workflows":  # a method's package, not its modules
        return within(module, CORE, "asu_plugin.workflows") or module in (
            "asu_plugin",
            *(f"asu_plugin.{m}" for m in METHODS),
        )
    return True  # the package's own files: its public names and the registry table


WORKFLOWS = "asu_plugin.workflows"


def workflow_room(path):
    """The room of ``workflows/`` a module lives in: ``run``, ``builders`` or a workflow's
    name ("" for the package's own file)."""
    parts = path.relative_to(PACKAGE / "workflows").parts
    return parts[0] if len(parts) > 1 else path.stem.replace("__init__", "")


def workflow_allowed(where, module):
    if not within(module, WORKFLOWS):
        return True
    rooms = {"run": ("run",), "builders": ("run", "builders")}.get(
        where, ("run", "builders", where)
    )
    return within(module, *(f"{WORKFLOWS}.{r}" for r in rooms))


MODULES = sorted(PACKAGE.rglob("*.py"))
WORKFLOW_MODULES = [p for p in MODULES if room(p) == "workflows"]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_keep_to_the_house_rules(path):
    where = room(path)
    broken = [
        f"line {line}: {module}"
        for line, module in imported(path)
        if not allowed(where, module)
    ]
    assert not broken, f"{where or 'asu_plugin'}/ may not import: {broken}"


@pytest.mark.parametrize(
    "path", WORKFLOW_MODULES, ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_workflows_keep_to_their_rooms(path):
    where = workflow_room(path)
    broken = [
        f"line {line}: {module}"
        for line, module in imported(path)
        if not workflow_allowed(where, module)
    ]
    assert not broken, f"workflows/{where or '__init__'} may not import: {broken}"


def test_the_workflow_rules_catch_a_workflow_importing_another():
    assert not workflow_allowed("owner_classifier", f"{WORKFLOWS}.calibrate.measure")
    assert not workflow_allowed("builders", f"{WORKFLOWS}.demo")
    assert not workflow_allowed("run", f"{WORKFLOWS}.builders.tofu_format")
    assert workflow_allowed("demo", f"{WORKFLOWS}.builders.targets")
    assert workflow_allowed("calibrate", f"{WORKFLOWS}.calibrate.rule")


def test_the_rules_catch_a_method_importing_another():
    assert not allowed("dareu", "asu_plugin.asu.smoothing")
    assert not allowed("dareu", "asu_plugin.asu")
    assert not allowed("core", "asu_plugin.asu")
    assert not allowed("workflows", "asu_plugin.dareu.rollout")
    assert allowed("workflows", "asu_plugin.dareu")
    assert allowed("asu", "asu_plugin.core.start")


def test_every_method_and_the_core_are_rooms_of_the_package():
    rooms = {room(path) for path in MODULES}
    assert {*METHODS, "core", "workflows"} <= rooms
