"""One method as a branch of the user's open-unlearning clone, in the host's own layout:

    python -m asu_plugin.upstream METHOD --host DIR      # METHOD: ASU, DareU, ME, IDK, paper-metrics

In a new git worktree of ``DIR`` (the checkout itself is never touched) it writes branch
``add-<method>`` with one commit: the method's modules and the shared ones they import,
moved to ``src/`` (``HOMES``) with their imports rewritten, the ``_register_*`` lines, the
method's configs, ``community/methods/<M>/`` and a ``docs/links.md`` row. The branch's code
imports no ``asu_plugin``; the ``compute_loss`` alias stays only where the host lacks
``compute_unlearn_loss``. Bad input: one line naming the problem and what to do, exit 2,
nothing written.
"""

import argparse
import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from asu_plugin.registration import ENTRIES

PACKAGE = Path(__file__).resolve().parent
SOURCE = PACKAGE.parent  # asu-plugin's checkout: community/ lives there
CLONE = "git clone https://github.com/locuslab/open-unlearning"

HOMES = {  # plugin module -> its module in the host's src/
    "asu_plugin.core.checks": "trainer.unlearn.core.checks",
    "asu_plugin.core.inputs": "trainer.unlearn.core.inputs",
    "asu_plugin.core.logits": "trainer.unlearn.core.logits",
    "asu_plugin.core.start": "trainer.unlearn.core.start",
    "asu_plugin.core.trainer": "trainer.unlearn.core.trainer",
    "asu_plugin.asu.smoothing": "trainer.unlearn.asu.smoothing",
    "asu_plugin.asu.reference": "trainer.unlearn.asu.reference",
    "asu_plugin.asu.trainers": "trainer.unlearn.asu.trainers",
    "asu_plugin.asu.models": "model.attention_smoothed",
    "asu_plugin.dareu.classifier": "trainer.unlearn.dareu.classifier",
    "asu_plugin.dareu.rollout": "trainer.unlearn.dareu.rollout",
    "asu_plugin.dareu.trainer": "trainer.unlearn.dareu.trainer",
    "asu_plugin.baselines.base": "trainer.unlearn.paper_baselines.base",
    "asu_plugin.baselines.me": "trainer.unlearn.paper_baselines.me",
    "asu_plugin.baselines.idk": "trainer.unlearn.paper_baselines.idk",
    "asu_plugin.baselines.data": "data.idk",
    "asu_plugin.metrics.paper": "evals.metrics.paper",
}
REGISTER = {  # host package -> its registration function
    "trainer": "_register_trainer",
    "model": "_register_model",
    "data": "_register_data",
    "evals.metrics": "_register_metric",
}
# the plugin's loading notes, which in the host's own tree are not true
LOADING_NOTE = re.compile(
    r"\s*Imports open-unlearning's ``\w+`` package:\s+load\s+via\s+``register\(\)``\."
)


@dataclass(frozen=True)
class Contribution:
    """What one method's branch adds: its registered ``entries`` (names in
    ``registration.ENTRIES``), ``configs`` (globs under the plugin's ``configs/``), its
    ``community/methods/`` folder and ``docs/links.md`` row (``section``: the table)."""

    entries: tuple
    configs: tuple
    community: str | None
    link: str
    section: str = "Implemented Methods"
    summary: str = ""


ASU_PAPER = "Paper [📄](https://arxiv.org/abs/2603.01285)"
ME_PAPER = "Paper [📄](https://arxiv.org/abs/2410.08109)"
CONTRIBUTIONS = {
    "ASU": Contribution(
        ("ASU_GD", "ASU_KL", "ASU_RMU", "AttentionSmoothedForCausalLM"),
        ("trainer/ASU_*.yaml", "experiment/unlearn/*/asu*.yaml"),
        "ASU",
        f"| ASU | {ASU_PAPER}, Code [🐙](https://github.com/Salehzz/ASU-unlearning) |",
        summary="Attention Smoothing Unlearning: self-distillation from the frozen "
        "model with its attention softmax temperature raised (ASU_GD, ASU_KL, ASU_RMU)",
    ),
    "DareU": Contribution(
        ("DareU",),
        ("trainer/DareU.yaml", "experiment/unlearn/tofu/dareu.yaml"),
        "DareU",
        "| DareU | Paper [📄](https://arxiv.org/abs/2605.30919) |",
        summary="DareU: RL against an owner classifier on sampled forget answers, "
        "KL to the start on retain answers",
    ),
    "ME": Contribution(
        ("ME_GD", "ME_KL"),
        ("trainer/ME_*.yaml", "experiment/unlearn/tofu/me.yaml"),
        "ME",
        f"| ME (maximising entropy) | {ME_PAPER} |",
        summary="ME: next-token distributions on forget text pulled to uniform "
        "(ME_GD, ME_KL)",
    ),
    "IDK": Contribution(
        ("IDK_GD", "IDK_KL", "IDK_AP", "IdkQADataset"),
        (
            "trainer/IDK_*.yaml",
            "experiment/unlearn/tofu/idk_ap.yaml",
            "data/datasets/TOFU_QA_retain_idk.yaml",
        ),
        "IDK",
        f"| IDK (+ AP) | {ME_PAPER} |",
        summary="IDK: refusals learnt on forget questions, with the AP retain term "
        "(IDK_GD, IDK_KL, IDK_AP)",
    ),
    "paper-metrics": Contribution(
        (
            "token_entropy",
            "cosine_similarity",
            "entailment_rate",
            "forget_efficacy",
            "forget_efficacy_no_nli",
        ),
        ("eval/tofu_paper*.yaml", "eval/tofu_metrics/*.yaml"),
        None,
        f"| Forget Efficacy, Model Utility (ASU paper) | {ASU_PAPER} |",
        section="Evaluation Metrics",
        summary="the ASU paper's Forget Efficacy and Model Utility metrics "
        "(eval=tofu_paper)",
    ),
}


class UpstreamError(Exception):
    """Input the command refuses; the message says what to do."""


def branch_name(method) -> str:
    return f"add-{method.lower()}"


def registered(contribution) -> dict:
    """``host package -> {registered name: plugin module}`` of the contribution."""
    found = {}
    for host_package, (_, entries) in ENTRIES.items():
        for name, target in entries.items():
            if name in contribution.entries:
                found.setdefault(host_package, {})[name] = target.split(":")[0]
    return found


def plugin_imports(module) -> list[str]:
    """The plugin modules ``module``'s file imports."""
    tree = ast.parse(module_file(module).read_text())
    return [
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("asu_plugin.")
    ]


def module_file(module) -> Path:
    return PACKAGE.parent / (module.replace(".", "/") + ".py")


def modules(contribution) -> list[str]:
    """The registered modules and every plugin module they import, in ``HOMES`` order."""
    needed = set()
    todo = [m for names in registered(contribution).values() for m in names.values()]
    while todo:
        module = todo.pop()
        if module in needed:
            continue
        if module not in HOMES:
            raise UpstreamError(f"{module} has no home in the host (upstream.HOMES)")
        needed.add(module)
        todo += plugin_imports(module)
    return [m for m in HOMES if m in needed]


def host_file(module) -> str:
    return "src/" + HOMES[module].replace(".", "/") + ".py"


def needs_alias(host) -> bool:
    """Whether the host calls ``compute_loss`` (no ``compute_unlearn_loss`` yet)."""
    grad_diff = (Path(host) / "src/trainer/unlearn/grad_diff.py").read_text()
    return "def compute_unlearn_loss" not in grad_diff


def without_alias(text) -> str:
    """``text`` without the ``HostEntry`` alias class, its imports and bases: for a host
    that calls ``compute_unlearn_loss`` itself."""
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "HostEntry":
            del lines[node.lineno - 1 : node.end_lineno]
            while lines[node.lineno - 1].strip() == "":  # the blank lines after it
                del lines[node.lineno - 1]
            break
    text = "".join(lines)
    text = re.sub(r"\bHostEntry, ", "", text)
    # RMU's own loss: compute_unlearn_loss, which this host has
    text = re.sub(
        r"# RMU's loss: [^\n]*\n_RMU_LOSS = getattr\(RMU, \"compute_unlearn_loss\", RMU.compute_loss\)",
        "_RMU_LOSS = RMU.compute_unlearn_loss",
        text,
    )
    return text


def rewritten(module, alias=True) -> str:
    """``module``'s code as the host's: imports and names of plugin modules rewritten to
    their ``HOMES``, the plugin's loading notes dropped."""
    text = module_file(module).read_text()
    text = LOADING_NOTE.sub("", text)
    for plugin, home in sorted(HOMES.items(), key=lambda item: -len(item[0])):
        text = re.sub(rf"\b{re.escape(plugin)}\b", home, text)
    text = text.replace('"asu-plugin: %s', '"%s')
    if not alias:
        text = without_alias(text)
    return text


def registration_edits(host, contribution) -> dict:
    """``host file -> new text``: the import of each registered name after the file's last
    import, one ``_register_*`` line each after its last registration."""
    edits = {}
    for host_package, names in registered(contribution).items():
        path = f"src/{host_package.replace('.', '/')}/__init__.py"
        text = (Path(host) / path).read_text()
        tree = ast.parse(text)
        function = REGISTER[host_package]
        statements = [
            n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
        ]
        own = [  # after the package's own imports, as the host lists its modules
            n
            for n in statements
            if (getattr(n, "module", "") or "").startswith(host_package)
        ]
        last_import = (own or statements)[-1].end_lineno
        calls = [
            n.end_lineno
            for n in tree.body
            if isinstance(n, ast.Expr)
            and isinstance(n.value, ast.Call)
            and getattr(n.value.func, "id", None) == function
        ]
        if not calls:
            raise UpstreamError(f"{path} of {host} has no {function}(...) line")
        by_module = {}
        for name, module in names.items():
            by_module.setdefault(HOMES[module], []).append(name)
        imports = [import_line(home, n) for home, n in by_module.items()]
        registrations = [f"{function}({name})\n" for name in names]
        lines = text.splitlines(keepends=True)
        lines[max(calls) : max(calls)] = registrations
        lines[last_import:last_import] = imports
        edits[path] = "".join(lines)
    return edits


def import_line(module, names) -> str:
    """``from module import names``, wrapped as ruff formats it past 88 characters."""
    line = f"from {module} import {', '.join(names)}\n"
    if len(line) <= 89:
        return line
    return f"from {module} import (\n" + "".join(f"    {n},\n" for n in names) + ")\n"


def links_edit(host, contribution) -> str:
    """``docs/links.md`` with the contribution's row at the end of its section's table."""
    lines = (Path(host) / "docs/links.md").read_text().splitlines(keepends=True)
    start = next(
        (
            i
            for i, line in enumerate(lines)
            if line.startswith("## ") and contribution.section in line
        ),
        None,
    )
    if start is None:
        raise UpstreamError(
            f"docs/links.md of {host} has no '{contribution.section}' section"
        )
    row = next(i for i in range(start, len(lines)) if lines[i].startswith("|"))
    while row < len(lines) and lines[row].startswith("|"):
        row += 1
    lines.insert(row, contribution.link + "\n")
    return "".join(lines)


def branch_files(host, method, source=SOURCE) -> dict:
    """``path in the host -> text`` of everything the branch adds or changes; ``source``:
    asu-plugin's checkout (its ``community/``)."""
    contribution = CONTRIBUTIONS[method]
    alias = needs_alias(host)
    files = {host_file(m): rewritten(m, alias) for m in modules(contribution)}
    files |= registration_edits(host, contribution)
    for pattern in contribution.configs:
        for path in sorted((PACKAGE / "configs").glob(pattern)):
            files[f"configs/{path.relative_to(PACKAGE / 'configs')}"] = path.read_text()
    if contribution.community:
        folder = Path(source) / "community" / "methods" / contribution.community
        if not folder.is_dir():
            raise UpstreamError(
                f"no {folder}: the command needs asu-plugin's source checkout "
                "(pass --source <your clone of asu-plugin>)"
            )
        for path in sorted(folder.iterdir()):
            files[f"community/methods/{contribution.community}/{path.name}"] = (
                path.read_text()
            )
    files["docs/links.md"] = links_edit(host, contribution)
    return files


def commit_message(method, files) -> str:
    """The commit message, which is also the pull request's text."""
    contribution = CONTRIBUTIONS[method]
    code = sorted(
        p for p in files if p.startswith("src/") and not p.endswith("__init__.py")
    )
    lines = [
        f"Add {contribution.summary}",
        "",
        "What this adds:",
        *(f"- `{p}`" for p in code),
        f"- registered: {', '.join(contribution.entries)}",
        *(
            f"- `{p}`"
            for p in sorted(files)
            if p.startswith(("configs/", "community/"))
        ),
        "- a `docs/links.md` row",
        "",
        "How it was tested (asu-plugin's tests/test_host_upstream.py, on host main and on",
        "the transformers-4.51 port): the added and changed files pass ruff 0.6.6, and",
        "`make quality` passes where the host's own tree does; `src/train.py` (or",
        "`src/eval.py` for metrics) runs the method on a tiny model in an environment",
        "without asu-plugin, and one step gives the plugin's loss and weights (within 1e-6).",
    ]
    return "\n".join(lines) + "\n"


def git(*args, cwd, check=True, input=None):
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=check,
        input=input,
    )


def check_host(host, method, worktree) -> Path:
    """The host checkout's root; ``UpstreamError`` if ``method``, the host or the target
    branch and worktree cannot be used."""
    if method not in CONTRIBUTIONS:
        raise UpstreamError(
            f"unknown method {method!r}: one of {', '.join(CONTRIBUTIONS)}"
        )
    host = Path(host).expanduser().resolve()
    in_git = host.is_dir() and git("rev-parse", cwd=host, check=False).returncode == 0
    if not in_git or not (host / "src" / "train.py").is_file():
        raise UpstreamError(
            f"{host} is not a git clone of open-unlearning: {CLONE}, then --host <it>"
        )
    if not (host / "src" / "trainer" / "unlearn").is_dir():
        raise UpstreamError(
            f"{host} is not laid out as open-unlearning (no src/trainer/unlearn): "
            f"use a clone of its main branch ({CLONE})"
        )
    branch = branch_name(method)
    found = git(
        "rev-parse",
        "--verify",
        "--quiet",
        f"refs/heads/{branch}",
        cwd=host,
        check=False,
    )
    if found.returncode == 0:
        raise UpstreamError(
            f"{host} has a branch {branch} already: delete it "
            f"(git -C {host} branch -D {branch}) or push that one"
        )
    if Path(worktree).exists():
        raise UpstreamError(
            f"{worktree} exists: remove it or pass --worktree <new folder>"
        )
    return host


def write_branch(host, method, worktree=None, source=SOURCE) -> Path:
    """``add-<method>`` in a new worktree (default ``<host>-add-<method>``); its path."""
    worktree = Path(
        worktree or f"{Path(host).expanduser().resolve()}-{branch_name(method)}"
    )
    host = check_host(host, method, worktree)
    # everything read and checked before anything is written
    files = branch_files(host, method, source)
    git("worktree", "add", "-q", "-b", branch_name(method), str(worktree), cwd=host)
    for path, text in files.items():
        target = worktree / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git("add", "-A", cwd=worktree)
    identity = []
    if not git("config", "user.name", cwd=worktree, check=False).stdout.strip():
        identity = [
            "-c",
            "user.name=asu-plugin upstream",
            "-c",
            "user.email=upstream@localhost",
        ]
    message = commit_message(method, files)
    result = git(
        *identity, "commit", "-q", "-F", "-", cwd=worktree, check=False, input=message
    )
    if result.returncode:
        raise UpstreamError(f"git commit failed in {worktree}: {result.stderr.strip()}")
    return worktree


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m asu_plugin.upstream", description=__doc__.splitlines()[0]
    )
    parser.add_argument("method", help=f"one of {', '.join(CONTRIBUTIONS)}")
    parser.add_argument("--host", required=True, help="your clone of open-unlearning")
    parser.add_argument("--worktree", help="where the branch's worktree goes")
    parser.add_argument(
        "--source", default=SOURCE, help="asu-plugin's checkout (default: this one)"
    )
    args = parser.parse_args(argv)
    try:
        worktree = write_branch(args.host, args.method, args.worktree, args.source)
    except UpstreamError as error:
        print(f"upstream: {error}; nothing was written", file=sys.stderr)
        raise SystemExit(2) from None
    message = git("log", "-1", "--format=%B", cwd=worktree).stdout
    print(f"branch {branch_name(args.method)} in {worktree}:\n\n{message}")


if __name__ == "__main__":
    main()
