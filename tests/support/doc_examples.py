"""The shell examples of the docs, and the answers the docs give for them.

The convention, which ``tests/e2e/test_doc_examples.py`` holds README.md and docs/api.md to:

* Every fenced ```` ```bash ```` block is an example. It **runs** when each of its commands is a
  ``curl`` command; any other block (``make``, ``docker``, ``kubectl``, ``python``, ``cp``...)
  is not run (it sets up what the curl blocks talk to), and the test does not collect it.
* A command's **documented answer** is JSON: a ``# {...}`` (or ``# [...]``) comment on the
  command's own line or on the comment lines right after it (a JSON value may go on over
  several ``#`` lines), or the ```` ```json ```` block right after a block of one command.
  After the JSON value, a comment may go on in words (``# {"status": "ok"} while ...``); a
  comment that does not start with ``{`` or ``[`` is only a comment.
* In a documented answer, ``...`` stands for what is left out: more members of an object, more
  items at the end of an array. Numbers match within :data:`TOLERANCE`; everything else
  exactly.
* A command without a documented answer must still succeed and print something that is not an
  error body (``{"error": ...}``).
* Every ``curl`` shows its errors: ``-sS`` (or ``--show-error``) or ``--fail-with-body``.

Commands run with bash from the repository root (so ``examples/seven.png`` is found), with
``localhost:8000`` swapped for the test server's address.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOLERANCE = 1e-3  # absolute: documented scores and probabilities are rounded
ELLIPSIS = "\u2026"  # what "..." in a documented answer becomes once parsed
RUNNABLE = {"curl"}
_FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass
class Command:
    text: str  # what bash runs (continuation lines included, comments left out)
    line: int  # 1-based line of the file where it starts
    comments: list[str] = field(default_factory=list)  # its own and the ones right after it
    answer: str | None = None  # the documented answer's text, if any

    @property
    def program(self) -> str:
        words = shlex.split(self.text, comments=True)
        while words and re.fullmatch(r"\w+=.*", words[0]):  # VAR=value program ...
            words.pop(0)
        return words[0] if words else ""


@dataclass
class Example:
    path: Path
    line: int  # the line of the opening fence
    commands: list[Command]

    @property
    def programs(self) -> list[str]:
        return sorted({command.program for command in self.commands})

    @property
    def runnable(self) -> bool:
        return bool(self.commands) and set(self.programs) <= RUNNABLE

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line}"


def fenced_blocks(text: str) -> list[tuple[str, int, str, int]]:
    """(language, line of the opening fence, body, line of the closing fence), in order."""
    blocks = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening:
            end = index + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            blocks.append((opening[1], index + 1, "\n".join(lines[index + 1 : end]), end + 1))
            index = end
        index += 1
    return blocks


def examples(path: Path) -> list[Example]:
    """Every ```bash block of a Markdown file, its commands and their documented answers."""
    text = path.read_text()
    lines = text.splitlines()
    blocks = fenced_blocks(text)
    found = []
    for number, (language, start, body, end) in enumerate(blocks):
        if language != "bash":
            continue
        example = Example(path, start, split_commands(body, start + 1))
        for command in example.commands:
            command.answer = answer_in_comments(command)
        following = blocks[number + 1] if number + 1 < len(blocks) else None
        if following and following[0] == "json":
            between = lines[end : following[1] - 1]
            if not any(line.strip() for line in between):
                if len(example.commands) != 1 or example.commands[0].answer is not None:
                    raise ValueError(
                        f"{path}:{start}: a ```json answer follows a block that is not one "
                        "command without an answer of its own"
                    )
                example.commands[0].answer = following[2]
        found.append(example)
    return found


def _scan(line: str, quote: str | None) -> tuple[str, str | None, str | None]:
    """(code, comment or None, quote still open) for one line, given the quote open before it."""
    index = 0
    while index < len(line):
        char = line[index]
        if quote:
            if char == "\\" and quote == '"':
                index += 2
                continue
            if char == quote:
                quote = None
        elif char == "\\":
            index += 2
            continue
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip(), line[index + 1 :].strip(), None
        index += 1
    return line, None, quote


def split_commands(body: str, first_line: int) -> list[Command]:
    """A block's commands: a line ending in ``\\`` or inside an open quote goes on the next."""
    commands: list[Command] = []
    pending: list[str] = []
    start = first_line
    quote: str | None = None
    for offset, line in enumerate(body.splitlines()):
        if not pending and not line.strip():
            continue
        if not pending and line.lstrip().startswith("#"):
            if commands:
                commands[-1].comments.append(line.lstrip()[1:].strip())
            continue
        if not pending:
            start = first_line + offset
        code, comment, quote = _scan(line, quote)
        pending.append(code)
        if quote is None and not code.endswith("\\"):
            command = Command("\n".join(pending).strip(), start)
            if comment is not None:
                command.comments.append(comment)
            commands.append(command)
            pending = []
    if pending:
        raise ValueError(f"line {start}: a command is not closed: {' '.join(pending)[:80]}")
    return commands


def answer_in_comments(command: Command) -> str | None:
    """The JSON that one of the command's comments starts, continued over the comments after
    it until its brackets close; None if no comment starts with ``{`` or ``[``."""
    for index, comment in enumerate(command.comments):
        if not comment.startswith(("{", "[")):
            continue
        text = comment
        rest = command.comments[index + 1 :]
        while _json_end(text) is None and rest:
            text += "\n" + rest.pop(0)
        others = [c for c in rest if c.startswith(("{", "["))]
        if others:
            raise ValueError(f"line {command.line}: more than one answer for one command")
        return text
    return None


def _json_end(text: str) -> int | None:
    """Where the JSON value that ``text`` starts with ends (its brackets closed), or None."""
    depth = 0
    in_string = False
    index = 0
    while index < len(text):
        char = text[index]
        if in_string:
            if char == "\\":
                index += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return None


def parse_answer(text: str) -> Any:
    """A documented answer as Python: the JSON value it starts with (words after it are
    dropped), each ``...`` outside a string turned into an :data:`ELLIPSIS` member or item."""
    text = text.strip()
    end = _json_end(text)
    if end is None:
        raise ValueError(f"the answer's brackets never close: {text[:80]}")
    text = text[:end]
    out: list[str] = []
    stack: list[str] = []
    in_string = False
    index = 0
    while index < len(text):
        char = text[index]
        if in_string:
            out.append(char)
            if char == "\\":
                out.append(text[index + 1])
                index += 1
            elif char == '"':
                in_string = False
        elif text.startswith("...", index):
            out.append(f'"{ELLIPSIS}": null' if stack[-1] == "{" else f'"{ELLIPSIS}"')
            index += 3
            continue
        else:
            if char == '"':
                in_string = True
            elif char in "[{":
                stack.append(char)
            elif char in "]}":
                stack.pop()
            out.append(char)
        index += 1
    return json.loads("".join(out))


def mismatches(expected: Any, actual: Any, where: str = "answer") -> list[str]:
    """How ``actual`` differs from a documented answer (parsed by :func:`parse_answer`)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {actual!r:.80}"]
        keys = [key for key in expected if key != ELLIPSIS]
        problems = [f"{where}: no {key!r}" for key in keys if key not in actual]
        if ELLIPSIS not in expected:
            extra = sorted(set(actual) - set(keys))
            problems += [f"{where}: {key!r} is not documented" for key in extra]
        for key in keys:
            if key in actual:
                problems += mismatches(expected[key], actual[key], f"{where}.{key}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{where}: expected an array, got {actual!r:.80}"]
        open_ended = bool(expected) and expected[-1] == ELLIPSIS
        items = expected[:-1] if open_ended else expected
        if len(actual) < len(items) or (not open_ended and len(actual) != len(items)):
            return [f"{where}: {len(actual)} items, documented {len(items)}"]
        problems = []
        for index, item in enumerate(items):
            problems += mismatches(item, actual[index], f"{where}[{index}]")
        return problems
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        number = isinstance(actual, (int, float)) and not isinstance(actual, bool)
        if number and math.isclose(expected, actual, rel_tol=0, abs_tol=TOLERANCE):
            return []
        return [f"{where}: {actual!r}, documented {expected!r}"]
    if expected != actual or type(expected) is not type(actual):  # true is not 1
        return [f"{where}: {actual!r}, documented {expected!r}"]
    return []


def shows_errors(command: Command) -> bool:
    """Whether a curl command prints its errors (``-S``, ``--show-error``, ``--fail-with-body``)."""
    words = shlex.split(command.text, comments=True)
    for word in words:
        if word in ("--show-error", "--fail-with-body"):
            return True
        if re.fullmatch(r"-[A-Za-z]*S[A-Za-z]*", word):
            return True
    return False
