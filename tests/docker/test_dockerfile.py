"""The Dockerfile, read: what the real build (test_image.py, the CPU flavour) cannot show.

The GPU flavour is too heavy to build here, so its install step runs with a ``pip`` that writes
down its arguments; so does an unknown flavour, which must stop the build. Then what keeps
builds reproducible (every pip install from a lock file, hashes required) and the build
context small (.dockerignore lets in only what the Dockerfile copies).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from container_files import (
    ROOT,
    Dockerfile,
    Instruction,
    parse_assignments,
    read_dockerignore,
    split_flags,
)

from app.config import Settings

# Stubs for the commands of the build stage's install step: pip writes down its arguments,
# python answers the sysconfig question with a scratch site-packages, strip and python -m
# compileall do nothing; find and rm are the real ones.
STUBS = {
    "pip": 'printf "%s\\n" "$@" > "$PIP_ARGS"',
    "python": 'case "$1" in -c) echo "$SITE" ;; esac',
    "strip": ":",
}


def install_step(dockerfile: Dockerfile) -> Instruction:
    """The build stage's one RUN that looks at FLAVOR and installs the dependencies."""
    (run,) = [run for run in dockerfile.stages[0].all("RUN") if "FLAVOR" in run.value]
    return run


def replay_install(dockerfile: Dockerfile, tmp_path: Path, flavor: str | None) -> tuple[int, str]:
    """Run the install step with the stubs; returns its exit status and stderr."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in STUBS.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    args: dict[str, str] = {}
    for instruction in dockerfile.stages[0].all("ARG"):
        args.update(parse_assignments(instruction.value))
    assert args.get("FLAVOR") == "cpu", "CPU is the default flavour"
    if flavor is not None:
        args["FLAVOR"] = flavor
    (tmp_path / "site" / "tensorflow").mkdir(parents=True)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "PIP_ARGS": str(tmp_path / "pip-args"),
        "SITE": str(tmp_path / "site"),
        **args,
    }
    command = ["/bin/sh", "-c", install_step(dockerfile).value]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stderr


@pytest.mark.parametrize(
    ("flavor", "lock"),
    [(None, "image-cpu.txt"), ("cpu", "image-cpu.txt"), ("gpu", "image-gpu.txt")],
)
def test_flavor_installs_its_lock_file(
    dockerfile: Dockerfile, tmp_path: Path, flavor: str | None, lock: str
) -> None:
    returncode, stderr = replay_install(dockerfile, tmp_path, flavor)
    assert returncode == 0, stderr
    pip_args = (tmp_path / "pip-args").read_text().split()
    assert pip_args[0] == "install"
    assert {"--no-deps", "--require-hashes"} <= set(pip_args)
    requirement = pip_args[pip_args.index("-r") + 1]
    assert Path(requirement).name == lock
    assert (ROOT / "requirements" / lock).is_file()


def test_unknown_flavor_fails_the_build(dockerfile: Dockerfile, tmp_path: Path) -> None:
    returncode, stderr = replay_install(dockerfile, tmp_path, "tpu")
    assert returncode != 0
    assert "FLAVOR must be cpu or gpu, not 'tpu'" in stderr
    assert not (tmp_path / "pip-args").exists()


def test_every_pip_install_is_locked_and_hashed(dockerfile: Dockerfile) -> None:
    installs = [
        command
        for stage in dockerfile.stages
        for run in stage.all("RUN")
        for command in re.findall(r"\bpip3?\s+install\b[^;&|]*", run.value)
    ]
    assert installs, "no pip install in the Dockerfile"
    for command in installs:
        assert "--require-hashes" in command, command
        assert "--no-deps" in command, f"the lock file is the whole list: {command}"
        assert re.search(r"-r\s+\S*requirements/image-", command), command
    for run in dockerfile.final.all("RUN"):  # the runtime stage installs nothing
        assert not re.search(r"\b(apt-get|apt|apk|pip3?)\s+install\b", run.value), run.value


def test_multi_stage_build_on_python_slim(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2, "a build stage and a runtime stage"
    assert dockerfile.final.base == "python:3.11-slim"
    for stage in dockerfile.stages:
        assert stage.base == dockerfile.final.base, "build and run on the same Python"


def test_image_environment_is_settings(dockerfile: Dockerfile) -> None:
    env: dict[str, str] = {}
    for instruction in dockerfile.final.all("ENV"):
        env.update(parse_assignments(instruction.value))
    for name in env:
        if not name.startswith(("PYTHON", "PATH")):
            assert name.lower() in Settings.model_fields, f"ENV {name} is not a setting"
    assert env["WORKERS"] == "auto", "the image uses every CPU it is given"


def test_dockerignore_lets_in_only_what_the_dockerfile_copies(dockerfile: Dockerfile) -> None:
    """An allow-list: ``*`` first, then ``!`` exceptions for the COPY sources."""
    patterns = read_dockerignore()
    assert patterns[0] == "*", "exclude everything, then let in what is copied"
    allowed = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
    sources = [
        source.rstrip("/")
        for stage in dockerfile.stages
        for copy in stage.all("COPY")
        if "from" not in split_flags(copy.value)[0]
        for source in split_flags(copy.value)[1][:-1]
    ]
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
        assert any(a == source or a.startswith(f"{source}/") for a in allowed), source
    for allow in allowed:
        assert any(allow == s or allow.startswith(f"{s}/") for s in sources), f"!{allow}: unused"
    assert "**/__pycache__" in patterns
