"""Readers for the container files: the Dockerfile, docker-compose.yml and .dockerignore.

test_image.py builds and runs the image; what a build cannot show (the GPU flavour, Compose,
which no engine here runs) the other tests read from the files themselves. The Dockerfile parser
knows the instructions the project's Dockerfile uses (ARG, FROM, ENV, WORKDIR, COPY, RUN,
USER, EXPOSE, HEALTHCHECK, CMD, LABEL) and Dockerfile-style ``$VAR``/``${VAR:-default}``
substitution.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"

_VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-+])?(?P<word>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def substitute(text: str, env: dict[str, str]) -> str:
    """Dockerfile (and Compose) variable substitution: ``$V``, ``${V}``, ``${V:-d}``, ``${V:+x}``."""

    def replace(match: re.Match[str]) -> str:
        name = match["braced"] or match["plain"]
        value = env.get(name)
        op = match["op"]
        if op in (":-", "-"):
            unset = value is None or (op == ":-" and value == "")
            return match["word"] if unset else value
        if op in (":+", "+"):
            set_ = value is not None and (op == "+" or value != "")
            return match["word"] if set_ else ""
        return value or ""

    return _VAR.sub(replace, text)


@dataclass
class Instruction:
    keyword: str  # upper-cased: RUN, COPY, ...
    value: str  # the rest of the logical line, continuations joined
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form CMD/RUN/ENTRYPOINT, else None (shell form)."""
        text = self.value.strip()
        if not text.startswith("["):
            return None
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, list) else None


@dataclass
class Stage:
    base: str  # FROM image, global ARGs substituted
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no build stage named {name!r}")


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations; drop comments (also inside continued lines) and blanks."""
    lines: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if not current:
            start = number
        if stripped.endswith("\\"):
            current.append(stripped[:-1].strip())
            continue
        current.append(stripped)
        lines.append((start, " ".join(part for part in current if part)))
        current = []
    if current:
        lines.append((start, " ".join(current)))
    return lines


def parse_assignments(value: str) -> dict[str, str]:
    """``ARG``/``ENV``/``LABEL`` arguments: ``K=V K2="V 2"``, or the legacy ``ENV K V``."""
    tokens = shlex.split(value, posix=True)
    if tokens and "=" not in tokens[0]:
        return {tokens[0]: " ".join(tokens[1:])} if len(tokens) > 1 else {tokens[0]: ""}
    result = {}
    for token in tokens:
        key, _, val = token.partition("=")
        result[key] = val
    return result


def parse_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, text in logical_lines(path.read_text()):
        keyword, _, value = text.partition(" ")
        keyword = keyword.upper()
        value = value.strip()
        if keyword == "FROM":
            tokens = value.split()
            tokens = [t for t in tokens if not t.startswith("--")]
            name = tokens[2] if len(tokens) >= 3 and tokens[1].upper() == "AS" else None
            stages.append(Stage(substitute(tokens[0], global_args), name))
        elif not stages:
            assert keyword == "ARG", f"Dockerfile:{line}: only ARG may come before FROM"
            global_args.update(parse_assignments(value))
        else:
            stages[-1].instructions.append(Instruction(keyword, value, line))
    return Dockerfile(global_args, stages)


def split_flags(value: str) -> tuple[dict[str, str], list[str]]:
    """``COPY --from=build --chown=a:b src dst`` -> ({"from": "build", "chown": "a:b"}, [src, dst])."""
    tokens = shlex.split(value)
    flags = {}
    while tokens and tokens[0].startswith("--"):
        key, _, val = tokens.pop(0)[2:].partition("=")
        flags[key] = val
    return flags, tokens


def healthcheck_command(instruction: Instruction) -> list[str]:
    """The exec-form command of ``HEALTHCHECK [--options] CMD [...]``."""
    match = re.fullmatch(r"((?:--\S+\s+)*)CMD\s+(.*)", instruction.value, flags=re.DOTALL)
    assert match, f"Dockerfile:{instruction.line}: HEALTHCHECK without CMD"
    command = Instruction("CMD", match[2], instruction.line).exec_form()
    assert command, f"Dockerfile:{instruction.line}: HEALTHCHECK CMD is not in exec form"
    return command


def read_dockerignore(path: Path = DOCKERIGNORE) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    with path.open() as handle:
        return yaml.safe_load(handle)
