"""The documentation stays true: the generated configuration page is current, the README stays short,
and in the README, docs/*.md and bench/README.md every relative link resolves and every
``analytics-platform`` command and make target they name exists."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from analytics_platform.cli import app
from analytics_platform.settings import settings_reference

pytestmark = pytest.mark.fast

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
README_MAX_BYTES = 10_240
PAGES = sorted([README, REPO_ROOT / "bench" / "README.md", *(REPO_ROOT / "docs").glob("*.md")])

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
INLINE_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
COMMAND = "analytics-platform"
MAKE = re.compile(r"(?<![\w./-])make\s+([a-z][a-z0-9-]*)")
MAKE_RULE = re.compile(r"^([a-z][a-z0-9-]*)\s*:(?!=)", re.MULTILINE)


def _prose(text: str) -> str:
    """Markdown without fenced code blocks and code spans (where links are not links)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _code(text: str) -> Iterator[tuple[str, bool]]:
    """Every piece of code in ``text``: (a line of a fenced block, False) and (a code span, True)."""
    for block in FENCE.finditer(text):
        yield from ((line, False) for line in block.group(0).splitlines()[1:-1])
    for span in CODE_SPAN.finditer(FENCE.sub("", text)):
        yield span.group(2), True


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings: lower case, punctuation dropped, spaces as hyphens,
    repeats numbered."""
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def test_configuration_page_is_current() -> None:
    page = REPO_ROOT / "docs" / "configuration.md"
    assert page.exists(), "docs/configuration.md is missing: run `make docs`"
    assert page.read_text() == settings_reference(), (
        "docs/configuration.md differs from the Settings fields (analytics_platform/settings.py): run `make docs`"
    )


def test_readme_is_short() -> None:
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, (
        f"README.md is {size:,} bytes, over {README_MAX_BYTES:,}: move detail into docs/ and link to it"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    text = _prose(page.read_text())
    broken = []
    for target in [*INLINE_LINK.findall(text), *REFERENCE_LINK.findall(text)]:
        if SCHEME.match(target):
            continue  # a web address: not checked offline
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with that anchor in {linked.relative_to(REPO_ROOT)}")
    assert not broken, f"broken links in {page.relative_to(REPO_ROOT)}:\n  " + "\n  ".join(broken)


def _subcommands(command: Any) -> dict[str, Any]:
    """A command group's commands by name (typer's click classes are its own: read the attribute)."""
    return dict(getattr(command, "commands", None) or {})


def _resolve(root: Any, words: list[str]) -> tuple[list[str], Any]:
    """The longest command path ``words`` starts with; raises if it names no command, or too little."""
    path: list[str] = []
    command = root
    for word in words:
        sub = _subcommands(command)
        if word not in sub:
            break
        path.append(word)
        command = sub[word]
    takes_arguments = any(param.param_type_name == "argument" for param in getattr(command, "params", []))
    if not path or (len(path) < len(words) and not takes_arguments):
        raise LookupError(f"no command {' '.join([COMMAND, *words])}")
    if _subcommands(command):
        raise LookupError(f"{' '.join([COMMAND, *path])} needs a subcommand")
    return path, command


def _options(command: Any) -> set[str]:
    return {"--help"} | {name for param in command.params for name in [*param.opts, *param.secondary_opts]}


def mentioned_commands(text: str) -> list[str]:
    """Every ``analytics-platform ...`` invocation in the code of ``text``, and the first column of a table
    headed ``command``; ``a | b`` in a code span (``a \\| b`` in a table) names alternatives."""
    pieces = list(_code(text))
    in_command_table = False
    for line in FENCE.sub("", text).splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if not line.lstrip().startswith("|"):
            in_command_table = False
        elif cells and cells[0].lower() == "command":
            in_command_table = True
        elif in_command_table:
            pieces.extend((f"{COMMAND} {span.group(2)}", True) for span in CODE_SPAN.finditer(cells[0]))
    found = []
    for piece, alternatives in pieces:
        for match in re.finditer(rf"(?<![\w-]){COMMAND}\b([^`#;&]*)", piece):
            invocation = match.group(1) if alternatives else re.split(r"\s\|\s", match.group(1))[0]
            found.append(f"{COMMAND}{invocation}".strip())
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_named_commands_exist(page: Path) -> None:
    """Every command a page names (with each option it passes) exists, and its ``--help`` works."""
    root = typer.main.get_command(app)
    runner = CliRunner()
    problems = []
    mentions = mentioned_commands(page.read_text())
    assert mentions or page != README, "the README names no analytics-platform command"
    for mention in mentions:
        words: list[str] = []
        for alternative in re.split(r"\s*\\?\|\s*", mention.removeprefix(COMMAND)):
            tokens = alternative.replace("[", " ").replace("]", " ").split()
            leading = []
            for token in tokens:
                if not re.fullmatch(r"[a-z][a-z0-9-]*", token):
                    break
                leading.append(token)
            if not leading:
                continue  # `analytics-platform --help`, or a placeholder
            # An alternative replaces the last word of the previous one: `offsets show | reset`.
            words = [*words[:-1], *leading] if words and len(leading) == 1 else leading
            try:
                path, command = _resolve(root, words)
            except LookupError as error:
                problems.append(f"{mention!r}: {error}")
                continue
            words = path
            unknown = {token.split("=")[0] for token in tokens if token.startswith("--")} - _options(command)
            if unknown:
                problems.append(f"{mention!r}: {' '.join(path)} has no option {', '.join(sorted(unknown))}")
            result = runner.invoke(app, [*path, "--help"])
            if result.exit_code != 0:
                problems.append(f"{mention!r}: `{' '.join(path)} --help` exited {result.exit_code}: {result.output}")
    assert not problems, f"{page.relative_to(REPO_ROOT)} names commands the CLI does not have:\n  " + "\n  ".join(
        problems
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_named_make_targets_exist(page: Path) -> None:
    targets = set(MAKE_RULE.findall((REPO_ROOT / "Makefile").read_text()))
    named = {target for code, _ in _code(page.read_text()) for target in MAKE.findall(code)}
    assert named or page != README, "the README names no make target"
    assert named <= targets, (
        f"{page.relative_to(REPO_ROOT)} names make targets the Makefile lacks: {sorted(named - targets)}"
    )
