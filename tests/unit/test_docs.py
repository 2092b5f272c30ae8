"""The README and docs/ stay true: every `fmnist` and `fmnist-edge` command line in them parses
with the real CLI parser, every relative link resolves, and the README stays short.

Commands come from shell code blocks (whole lines, `\\` continuations joined, split at `&&`,
`||`, `;` and `|`) and from inline code spans. A block's command must parse completely; an
inline span may leave out required arguments (prose names a flag in passing), but every word
it does give must parse. Placeholders such as RUN or DIR are ordinary argument values; `...`
stands for omitted arguments and is dropped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCUMENTS = [README, *sorted((REPO / "docs").glob("*.md"))]
PROGRAMS = ("fmnist", "fmnist-edge")
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
OPERATORS = {"&&", "||", ";", "|", "&"}
MAX_README_LINES = 250
MAX_PROSE_CHARS = 120

FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+-]*)")
CODE_SPAN = re.compile(r"`([^`]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Line:
    path: Path
    number: int
    text: str
    fence: str | None  # the code block's language, None outside code blocks

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.number}"


@dataclass(frozen=True)
class Command:
    where: str
    words: list[str]
    complete: bool  # False for an inline span, which may omit required arguments


def _lines(path: Path) -> Iterator[Line]:
    fence = None
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        opening = FENCE.match(text)
        if opening:
            fence = opening.group(2).lower() if fence is None else None
            continue
        yield Line(path, number, text, fence)


def _paragraphs(lines: list[Line]) -> Iterator[tuple[Line, str]]:
    """Runs of prose lines (outside code blocks, up to a blank line), with their first line:
    a code span or a link may wrap onto the next line."""
    run: list[Line] = []
    for line in lines:
        if line.fence is None and line.text.strip():
            run.append(line)
        elif run:
            yield run[0], "\n".join(part.text for part in run)
            run = []
    if run:
        yield run[0], "\n".join(part.text for part in run)


def _line_of(first: Line, text: str, offset: int) -> str:
    number = first.number + text.count("\n", 0, offset)
    return f"{first.path.relative_to(REPO)}:{number}"


def _shell_commands(lines: list[Line]) -> Iterator[Command]:
    pending: list[Line] = []
    for line in lines:
        if line.fence not in SHELL_LANGUAGES:
            continue
        pending.append(line)
        if line.text.rstrip().endswith("\\"):
            continue
        text = " ".join(part.text.rstrip().removesuffix("\\") for part in pending)
        where, pending = pending[0].where, []
        lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        segment: list[str] = []
        for word in [*lexer, ";"]:
            if word in OPERATORS:
                yield from _as_command(where, segment, complete=True)
                segment = []
            else:
                segment.append(word)


def _inline_commands(lines: list[Line]) -> Iterator[Command]:
    for first, text in _paragraphs(lines):
        for span in CODE_SPAN.finditer(text):
            words = span.group(1).split()
            # `fmnist serve: gRPC on ...` is a line the program prints, not a command.
            if len(words) > 1 and words[1].endswith(":"):
                continue
            where = _line_of(first, text, span.start())
            yield from _as_command(where, shlex.split(span.group(1)), complete=False)


def _as_command(where: str, words: list[str], complete: bool) -> Iterator[Command]:
    while words and (ENV_ASSIGNMENT.match(words[0]) or words[0] == "sudo"):
        words = words[1:]
    if words and words[0] in PROGRAMS:
        yield Command(where, [w for w in words if w != "..."], complete)


def _commands() -> list[Command]:
    found = []
    for path in DOCUMENTS:
        lines = list(_lines(path))
        found += [*_shell_commands(lines), *_inline_commands(lines)]
    return found


COMMANDS = _commands()


class _ParseError(Exception):
    pass


@pytest.fixture
def parsers(monkeypatch: pytest.MonkeyPatch) -> dict[str, argparse.ArgumentParser]:
    """The real parsers, raising instead of printing usage and exiting."""
    tensorflow_was_loaded = "tensorflow" in sys.modules
    from fmnist.cli import build_parser
    from fmnist.edge.cli import build_parser as build_edge_parser

    def error(self: argparse.ArgumentParser, message: str):
        raise _ParseError(f"{self.prog}: {message}")

    monkeypatch.setattr(argparse.ArgumentParser, "error", error)
    built = {"fmnist": build_parser(), "fmnist-edge": build_edge_parser()}
    assert tensorflow_was_loaded or "tensorflow" not in sys.modules, "a parser imported TF"
    return built


def test_the_docs_show_commands_of_both_programs() -> None:
    programs = {command.words[0] for command in COMMANDS}
    assert programs == set(PROGRAMS)
    assert sum(command.complete for command in COMMANDS) >= 20


@pytest.mark.parametrize(
    "command", COMMANDS, ids=[f"{c.where} {' '.join(c.words)}" for c in COMMANDS]
)
def test_every_command_line_parses_with_the_real_cli(
    command: Command, parsers: dict[str, argparse.ArgumentParser]
) -> None:
    program, *arguments = command.words
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            parsers[program].parse_args(arguments)
    except SystemExit as done:  # --help and --version print and exit 0
        assert done.code == 0, f"{command.where}: `{' '.join(command.words)}` exited {done.code}"
    except _ParseError as err:
        if command.complete or "the following arguments are required" not in str(err):
            pytest.fail(f"{command.where}: `{' '.join(command.words)}` does not parse: {err}")


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as '-', -N repeats."""
    anchors: set[str] = set()
    for line in _lines(path):
        heading = HEADING.match(line.text) if line.fence is None else None
        if heading is None:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(2)).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        candidate, repeat = slug, 0
        while candidate in anchors:
            repeat += 1
            candidate = f"{slug}-{repeat}"
        anchors.add(candidate)
    return anchors


def _links() -> list[tuple[str, Path, str]]:
    found = []
    for path in DOCUMENTS:
        for first, text in _paragraphs(list(_lines(path))):
            # Links inside code are not links; blanking code keeps the offsets and line breaks.
            prose = CODE_SPAN.sub(lambda span: re.sub(r"[^\n]", " ", span.group(0)), text)
            for link in LINK.finditer(prose):
                found.append((_line_of(first, prose, link.start()), path, link.group(1)))
    return found


LINKS = _links()


def test_the_readme_links_to_every_doc() -> None:
    linked = {(README.parent / t.partition("#")[0]).resolve() for _, p, t in LINKS if p == README}
    assert set(DOCUMENTS) - {README} <= linked


@pytest.mark.parametrize(("where", "path", "target"), LINKS, ids=[f"{w} {t}" for w, _, t in LINKS])
def test_every_relative_link_resolves(where: str, path: Path, target: str) -> None:
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
        return
    file_part, _, anchor = target.partition("#")
    linked = (path.parent / file_part).resolve() if file_part else path
    assert linked.exists(), f"{where}: {target} does not exist"
    assert REPO in linked.parents or linked == REPO, f"{where}: {target} leaves the repository"
    if anchor and linked.suffix == ".md":
        assert anchor in _anchors(linked), f"{where}: no heading #{anchor} in {file_part or path}"


def test_the_readme_is_short_and_no_prose_line_is_long() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES
    for path in DOCUMENTS:
        for line in _lines(path):
            if line.fence is None and not line.text.lstrip().startswith("|"):
                assert len(line.text) <= MAX_PROSE_CHARS, f"{line.where}: prose over 120"
