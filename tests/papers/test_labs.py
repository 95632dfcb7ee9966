"""The classroom labs (papers/labs/*.md) cannot rot: every command a handout tells students to
type is run here, and what the handout shows it printing is checked against what it prints.

A handout marks what students type as fenced ```console blocks. In a block:

- a line starting with `$ ` is a command (a trailing backslash continues it on the next line);
- any other non-blank line is output the handout shows; it must appear in what the block's
  commands print, in order (other lines may come between). `...` inside a line stands for text
  that changes from run to run (wall-clock times); a line that is only `...` is a reminder that
  lines were left out and matches nothing.

HTML comments just before a block (only blank lines or other such comments in between) change
what is expected of it:

- `<!-- expect-exit: 129 -->`: every command in the block exits with 129 (default 0);
- `<!-- expect-output: "SAFETY VIOLATIONS" -->`: the phrase appears in the block's output
  (repeatable);
- `<!-- timeout: 60 -->`: seconds per command (default 120);
- `<!-- slow -->`: too slow for CI; the block runs on its own only with RAFTCRON_DEEP=1, in a
  fresh directory, so it must not depend on the blocks before it (nor they on it).

All of a handout's other blocks run in order, in one fresh temporary directory, as a student
working at the root of the checkout would run them: `examples/`, `tests/`, `papers/labs/` and
`pyproject.toml` are links into the repository; everything a lab writes stays in the temporary
directory. `raftcron` and `python` are this interpreter (`python -m raftcron`), whatever is on
PATH. Commands run under bash with `set -e` off; a pipeline's status is its last command's.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LABS = ROOT / "papers" / "labs"
HANDOUTS = sorted(LABS.glob("[0-9][0-9]_*.md"))
LINKED = ("examples", "tests", "pyproject.toml")  # plus papers/labs, linked one level down
SECTIONS = ("## Goal", "## Background", "## Steps", "## What to observe", "## Questions", "## Extension")
DEEP = bool(os.environ.get("RAFTCRON_DEEP"))
TIMEOUT_S = 120.0

_FENCE = re.compile(r"^```console[ \t]*$")
_DIRECTIVE = re.compile(r"^<!--\s*(expect-exit|expect-output|timeout|slow)\s*(?::\s*(.*?))?\s*-->$")


@dataclass
class Block:
    """One ```console block: its commands, the output it shows, and what is expected of it."""

    handout: str
    line: int  # 1-based line of the opening fence
    commands: list[str] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)
    exit_code: int = 0
    phrases: list[str] = field(default_factory=list)
    timeout_s: float = TIMEOUT_S
    slow: bool = False

    @property
    def where(self) -> str:
        return f"{self.handout}:{self.line}"


def parse_directive(block: Block, name: str, value: str | None, where: str) -> None:
    if name == "slow":
        block.slow = True
        return
    if value is None:
        raise ValueError(f"{where}: <!-- {name} --> needs a value")
    if name == "expect-exit":
        block.exit_code = int(value)
    elif name == "timeout":
        block.timeout_s = float(value)
    else:
        match = re.fullmatch(r'"(.*)"', value)
        if match is None:
            raise ValueError(f"{where}: expect-output takes a quoted phrase, got {value!r}")
        block.phrases.append(match.group(1))


def parse_handout(path: Path) -> list[Block]:
    """Every ```console block of a handout, with the directives written just before it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    pending: list[tuple[str, str | None, int]] = []
    i = 0
    while i < len(lines):
        text = lines[i].strip()
        directive = _DIRECTIVE.match(text)
        if directive:
            pending.append((directive.group(1), directive.group(2), i + 1))
        elif _FENCE.match(text):
            block = Block(path.name, i + 1)
            for name, value, number in pending:
                parse_directive(block, name, value, f"{path.name}:{number}")
            pending = []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                line = lines[i]
                if line.startswith("$ "):
                    command = line[2:]
                    while command.endswith("\\") and i + 1 < len(lines):
                        i += 1
                        command = command[:-1] + " " + lines[i].strip()
                    block.commands.append(command.strip())
                elif line.strip() and line.strip() != "...":
                    block.shown.append(line.rstrip())
                i += 1
            assert i < len(lines), f"{path.name}:{block.line}: console block never closed"
            assert block.commands, f"{block.where}: a console block without a `$ ` command"
            blocks.append(block)
        elif text and not text.startswith("<!--"):
            pending = []  # directives belong to the block right below them
        i += 1
    return blocks


def shown_line_pattern(line: str) -> re.Pattern[str]:
    """A shown output line as a regex: literal text, with `...` matching anything."""
    parts = [re.escape(part) for part in line.strip().split("...")]
    return re.compile(r"\s*" + ".*".join(parts) + r"\s*")


def missing_shown_lines(shown: list[str], output: str) -> list[str]:
    """The shown lines that do not appear, in order, among the output's lines."""
    actual = output.splitlines()
    position, missing = 0, []
    for line in shown:
        pattern = shown_line_pattern(line)
        for index in range(position, len(actual)):
            if pattern.fullmatch(actual[index]):
                position = index + 1
                break
        else:
            missing.append(line)
    return missing


def make_workdir(base: Path) -> tuple[Path, dict[str, str]]:
    """A directory laid out like the checkout's root for a lab to run in, and its environment."""
    work = base / "work"
    work.mkdir()
    for name in LINKED:
        (work / name).symlink_to(ROOT / name)
    (work / "papers").mkdir()
    (work / "papers" / "labs").symlink_to(LABS)
    shims = base / "bin"
    shims.mkdir()
    for name, target in (("python", f'exec {shlex.quote(sys.executable)} "$@"'),
                         ("raftcron", f'exec {shlex.quote(sys.executable)} -m raftcron "$@"')):
        shim = shims / name
        shim.write_text(f"#!/bin/sh\n{target}\n")
        shim.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{shims}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("RAFTCRON_BUG", None)  # a handout sets what it needs on its own command line
    env["COLUMNS"] = "100"
    return work, env


def run_block(block: Block, work: Path, env: dict[str, str]) -> float:
    """Run a block's commands and check them; return the wall seconds they took."""
    started = time.monotonic()
    output = ""
    for command in block.commands:
        try:
            done = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True,
                                  text=True, timeout=block.timeout_s, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{block.where}: `{command}` took more than {block.timeout_s:g} s")
        printed = done.stdout + done.stderr
        output += printed
        assert done.returncode == block.exit_code, (
            f"{block.where}: `{command}` exited {done.returncode}, the handout says {block.exit_code}\n"
            f"{printed[-3000:]}")
    for phrase in block.phrases:
        assert phrase in output, f"{block.where}: output lacks {phrase!r}\n{output[-3000:]}"
    missing = missing_shown_lines(block.shown, output)
    assert not missing, (f"{block.where}: the handout shows lines the commands did not print "
                         f"(in this order):\n  " + "\n  ".join(missing) + f"\n--- printed:\n{output[-4000:]}")
    return time.monotonic() - started


# ---- the handouts' commands ----------------------------------------------------------------------


@pytest.mark.parametrize("path", HANDOUTS, ids=[path.stem for path in HANDOUTS])
def test_every_command_in_a_handout_runs_as_shown(path: Path, tmp_path: Path) -> None:
    work, env = make_workdir(tmp_path)
    blocks = [block for block in parse_handout(path) if not block.slow]
    assert blocks, f"{path.name} has no console blocks"
    for block in blocks:
        run_block(block, work, env)


SLOW = [(path, block) for path in HANDOUTS for block in parse_handout(path) if block.slow]

if SLOW:  # defined only when a handout marks a block slow: pytest reports an empty parameter set as a skip

    @pytest.mark.slow
    @pytest.mark.parametrize("path, block", SLOW, ids=[block.where for _, block in SLOW])
    def test_slow_blocks_run_alone(path: Path, block: Block, tmp_path: Path) -> None:
        work, env = make_workdir(tmp_path)
        run_block(block, work, env)


# ---- the handouts' shape -------------------------------------------------------------------------


def test_there_are_four_to_six_labs() -> None:
    assert 4 <= len(HANDOUTS) <= 6, [path.name for path in HANDOUTS]


@pytest.mark.parametrize("path", HANDOUTS, ids=[path.stem for path in HANDOUTS])
def test_a_handout_has_every_section_in_order(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    positions = [text.find(f"\n{heading}\n") for heading in SECTIONS]
    assert all(p >= 0 for p in positions), f"{path.name} lacks {[h for h, p in zip(SECTIONS, positions) if p < 0]}"
    assert positions == sorted(positions), f"{path.name}: sections out of order"
    questions = text[positions[4]:positions[5]]
    count = len(re.findall(r"^\d+\. ", questions, flags=re.MULTILINE))
    assert 3 <= count <= 6, f"{path.name}: {count} questions; a lab asks 3 to 6"


def test_the_index_and_the_answers_cover_every_lab() -> None:
    index = (LABS / "README.md").read_text(encoding="utf-8")
    answers = (LABS / "ANSWERS.md").read_text(encoding="utf-8")
    for path in HANDOUTS:
        assert f"({path.name})" in index, f"README.md does not link {path.name}"
        number = path.name[:2]
        assert re.search(rf"^## Lab {int(number)}\b", answers, flags=re.MULTILINE), \
            f"ANSWERS.md has no '## Lab {int(number)}' section"


def test_files_the_handouts_name_exist() -> None:
    """Every papers/labs/files/... path a handout mentions is in the repository."""
    for path in [*HANDOUTS, LABS / "README.md", LABS / "ANSWERS.md"]:
        for name in re.findall(r"papers/labs/files/[\w./-]+\w", path.read_text(encoding="utf-8")):
            assert (ROOT / name).exists(), f"{path.name} names {name}, which does not exist"


# ---- the checker itself --------------------------------------------------------------------------


def test_the_parser_reads_directives_continuations_and_shown_output(tmp_path: Path) -> None:
    handout = tmp_path / "99_demo.md"
    handout.write_text(
        "Some text.\n\n<!-- expect-exit: 129 -->\n<!-- expect-output: \"SAFETY\" -->\n\n```console\n"
        "$ raftcron sim --bug x \\\n    --seeds 2\nseed 0: ok\n...\n```\n\nMore text.\n\n"
        "<!-- slow -->\nA paragraph breaks the link.\n\n```console\n$ true\n```\n")
    first, second = parse_handout(handout)
    assert first.commands == ["raftcron sim --bug x  --seeds 2"]
    assert (first.exit_code, first.phrases, first.shown) == (129, ["SAFETY"], ["seed 0: ok"])
    assert (second.exit_code, second.slow, second.phrases) == (0, False, [])


def test_shown_lines_must_appear_in_order_with_dots_as_wildcards() -> None:
    output = "raftcron sim: 5 nodes\n  17852 events in 0.439 s wall (136.8x real time)\n  first leader after 168 ms\n"
    assert missing_shown_lines(["  ... events in ... s wall (...x real time)", "first leader after 168 ms"],
                               output) == []
    assert missing_shown_lines(["first leader after 168 ms", "raftcron sim: 5 nodes"], output) == \
        ["raftcron sim: 5 nodes"]
    assert missing_shown_lines(["first leader after 16 ms"], output) == ["first leader after 16 ms"]
