"""The documentation stays true: README.md and docs/*.md.

* every `centernet ...` line of a shell code block (and every `torchrun ... -m centernet.cli CMD ...` line, from
  CMD on) parses with the real argument parser;
* every relative link `[text](path)` points at a file that exists;
* README.md stays a front page (at most 12,000 characters) and no page reads as a development diary.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from centernet.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_LIMIT = 12_000
# The test command CI runs (.ci/run): the README must show it byte for byte.
TEST_COMMAND = 'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest -q'
DEMO_COMMAND = "pip install torch==2.13.0 && pip install -e . && centernet demo"

SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
DIARY = re.compile(r"this round|last session|this session|\bSPEC\s+(section\s+)?\d", re.IGNORECASE)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*$")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def code_blocks(path: Path) -> list[tuple[str, int, list[str]]]:
    """(language, first line number, lines) of every fenced code block of a Markdown file."""
    blocks, current, language, start = [], None, "", 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", line)
        if fence and current is None:
            current, language, start = [], fence.group(2).lower(), number + 1
        elif fence and current is not None and not fence.group(2):
            blocks.append((language, start, current))
            current = None
        elif current is not None:
            current.append(line)
    assert current is None, f"{_rel(path)}: a code block opened at line {start - 1} is never closed"
    return blocks


def strip_comment(line: str) -> str:
    """The line without a trailing shell comment: a `#` at the start of a word, outside quotes."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def logical_lines(lines: list[str]) -> list[tuple[int, str]]:
    """(offset of the first physical line, text) with `\\` continuations joined and comments stripped."""
    out, pending, first = [], "", 0
    for offset, line in enumerate(lines):
        if not pending:
            first = offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((first, strip_comment(pending + line)))
        pending = ""
    if pending:
        out.append((first, strip_comment(pending)))
    return out


OURS = re.compile(r"^(\$\s+)?([A-Za-z_][A-Za-z0-9_]*=\S*\s+)*(srun\s+)?(centernet|torchrun)(\s|$)")


def centernet_args(command: str) -> list[str] | None:
    """The arguments after `centernet` (or after `-m centernet.cli` of a torchrun line), or None when the
    command is not one of ours or holds a placeholder (`...`, `<name>`)."""
    command = command.strip()
    if not OURS.match(command) or "..." in command or "<" in command or ">" in command:
        return None
    words = shlex.split(command)
    if words[:1] == ["$"]:
        words = words[1:]
    while words and ENV_ASSIGNMENT.match(words[0]):  # OMP_NUM_THREADS=4 torchrun ...
        words = words[1:]
    if words[:1] == ["srun"]:
        words = words[1:]
    if words[:1] == ["centernet"]:
        return words[1:]
    for i, word in enumerate(words[:-1]):  # torchrun
        if (word, words[i + 1]) in (("-m", "centernet.cli"), ("--no-python", "centernet")):
            return words[i + 2:]
    return None


def documented_commands() -> list[tuple[str, str]]:
    """(file:line, command) of every line of a shell code block that runs centernet."""
    commands = []
    for page in PAGES:
        for language, start, lines in code_blocks(page):
            if language not in SHELL_LANGUAGES:
                continue
            for offset, text in logical_lines(lines):
                for part in text.split(" && "):
                    part = part.strip()
                    if OURS.match(part) and not ("..." in part or "<" in part or ">" in part):
                        commands.append((f"{_rel(page)}:{start + offset}", part))
    return commands


COMMANDS = documented_commands()


def test_the_docs_document_commands() -> None:
    assert len(COMMANDS) >= 30, COMMANDS
    assert any(where.startswith("README.md:") for where, _ in COMMANDS)
    subcommands = set()
    for _, command in COMMANDS:
        try:
            subcommands.add((centernet_args(command) or ["?"])[0])
        except ValueError:
            pass  # reported by test_documented_command_parses
    assert subcommands >= {"train", "eval", "analyze", "predict", "export", "split", "demo"}, subcommands


@pytest.mark.parametrize("where,command", COMMANDS, ids=[where for where, _ in COMMANDS])
def test_documented_command_parses(where: str, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        args = centernet_args(command)
    except ValueError as error:  # shlex: an unclosed quote
        pytest.fail(f"{where}: `{command}` is not a shell command line: {error}")
    assert args is not None, f"{where}: `{command}` runs no centernet command"
    try:
        build_parser().parse_args(args)
    except SystemExit as exit_:
        pytest.fail(f"{where}: `{command}` does not parse (exit {exit_.code}): {capsys.readouterr().err.strip()}")


def test_the_checker_sees_what_it_should() -> None:
    lines = ["centernet train --preset ctdet_cpu_small \\", "    --train voc/   # a comment", "ls"]
    assert logical_lines(lines) == [(0, "centernet train --preset ctdet_cpu_small      --train voc/"), (2, "ls")]
    assert centernet_args(strip_comment("$ centernet eval m.pth --data 'a b#c.json'  # note")) == [
        "eval", "m.pth", "--data", "a b#c.json"]
    assert strip_comment("centernet eval m.pth --data 'a #b.json'  # note") == "centernet eval m.pth --data 'a #b.json'"
    assert centernet_args("OMP_NUM_THREADS=4 torchrun --nproc-per-node 2 -m centernet.cli train --train x") == [
        "train", "--train", "x"]
    assert centernet_args("srun torchrun --nnodes 2 --no-python centernet train --train x") == ["train", "--train", "x"]
    assert centernet_args("centernet eval ... --data val.json") is None
    assert centernet_args("centernet predict <model> photos/") is None
    assert centernet_args("pip install -e .") is None
    assert centernet_args("centernetwork --help") is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "m.pth", "--data", "v.json", "[--flip]"])


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every Markdown link and image outside code blocks."""
    found, in_code = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if re.match(r"^\s*(```|~~~)", line):
            in_code = not in_code
            continue
        if not in_code:
            found.extend((number, target) for target in LINK.findall(line))
    return found


RELATIVE_LINKS = [(page, number, target) for page in PAGES for number, target in links(page)
                  if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) and not target.startswith("#")]


def test_the_docs_link_to_each_other() -> None:
    targets = {(page.parent / target.split("#")[0]).resolve() for page, _, target in RELATIVE_LINKS}
    images = (ROOT / "docs" / "images").resolve()
    assert any(page == README and (ROOT / target).resolve().parent == images for page, _, target in RELATIVE_LINKS), \
        "README.md shows no picture of docs/images"
    for page in PAGES[1:]:  # every page of docs/ is reachable from the README or another page
        assert page.resolve() in targets, f"nothing links to {_rel(page)}"


@pytest.mark.parametrize("page,number,target", RELATIVE_LINKS,
                         ids=[f"{_rel(p)}:{n}:{t}" for p, n, t in RELATIVE_LINKS])
def test_relative_link_resolves(page: Path, number: int, target: str) -> None:
    path = target.split("#")[0]
    assert (page.parent / path).exists(), f"{_rel(page)}:{number}: link to {target!r}: no such file"


def test_readme_is_a_front_page() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text) <= README_LIMIT, f"README.md has {len(text)} characters, more than {README_LIMIT}"
    assert TEST_COMMAND in text.splitlines(), "README.md lost the test command CI runs"
    assert DEMO_COMMAND in text.splitlines(), "README.md lost the demo command"
    ci = ROOT / ".ci" / "run"
    if ci.exists():
        assert TEST_COMMAND in ci.read_text(encoding="utf-8"), ".ci/run no longer runs the README's test command"


@pytest.mark.parametrize("page", PAGES, ids=[_rel(p) for p in PAGES])
def test_no_diary_wording(page: Path) -> None:
    hits = [f"{_rel(page)}:{number}: {match.group(0)!r}"
            for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
            for match in DIARY.finditer(line)]
    assert not hits, "diary wording (write facts instead): " + "; ".join(hits)
