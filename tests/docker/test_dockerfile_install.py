"""The Dockerfile, checked without a Docker engine.

Fast tests read it: stages, base image, user, port, CMD, what the runtime stage copies, and which
pip command each FLAVOR runs. The slow test replays it: the build stage's ARG/ENV/WORKDIR/COPY/RUN
steps in a fresh virtualenv under a temporary "image root" (so ``pip install`` is the Dockerfile's
own command, not editable), then the runtime stage's layout, then starts the app exactly as CMD
does, waits for ``GET /readyz`` to answer 200, sends SIGTERM and expects exit status 0.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from container_files import (
    ROOT,
    Dockerfile,
    Instruction,
    Stage,
    parse_assignments,
    read_dockerignore,
    split_flags,
    substitute,
)

from app.config import Settings

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# PATH in the python:*-slim images, before any ENV of ours.
IMAGE_PATH = "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
# Runtime-stage RUN steps matter only inside an image (users, permissions); the replay skips them.
IMAGE_ONLY_COMMANDS = {"groupadd", "useradd", "addgroup", "adduser", "mkdir", "chown", "chmod"}
START_TIMEOUT_S = 180
STOP_TIMEOUT_S = 60


def pip_install_runs(stage: Stage) -> list[Instruction]:
    return [run for run in stage.all("RUN") if re.search(r"\bpip3?\s+install\b", run.value)]


def flavor_run(dockerfile: Dockerfile) -> Instruction:
    """The build stage's one RUN that looks at FLAVOR (and installs the dependencies)."""
    (run,) = [run for run in pip_install_runs(dockerfile.stages[0]) if "FLAVOR" in run.value]
    return run


def copies_from(stage: Stage, source_stage: str | None = None) -> list[tuple[list[str], str]]:
    """(sources, destination) of the stage's COPY instructions from ``source_stage`` (None: the
    build context)."""
    result = []
    for copy in stage.all("COPY"):
        flags, paths = split_flags(copy.value)
        if flags.get("from") == source_stage:
            result.append((paths[:-1], paths[-1]))
    return result


# ---------------------------------------------------------------------------------------------
# Fast checks


def test_multi_stage_build_on_python_slim(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2, "a build stage and a runtime stage"
    assert dockerfile.final.base == "python:3.11-slim"
    for stage in dockerfile.stages:
        assert stage.base == dockerfile.final.base, "build and run on the same Python"


def test_runtime_stage_runs_as_a_non_root_user(dockerfile: Dockerfile) -> None:
    user = dockerfile.final.last("USER")
    assert user is not None, "the runtime stage sets no USER"
    assert user.value.split(":")[0] not in {"root", "0"}


def test_port_and_command(dockerfile: Dockerfile) -> None:
    assert any("8000" in expose.value.split() for expose in dockerfile.final.all("EXPOSE"))
    cmd = dockerfile.final.last("CMD")
    assert cmd is not None
    assert cmd.exec_form() == ["python", "-m", "app"], "exec form, so SIGTERM reaches uvicorn"
    assert dockerfile.final.last("ENTRYPOINT") is None


def test_runtime_stage_copies_only_the_venv_and_the_models(dockerfile: Dockerfile) -> None:
    final = dockerfile.final
    build_names = {stage.name for stage in dockerfile.stages[:-1]}
    from_stages = [split_flags(c.value)[0].get("from") for c in final.all("COPY")]
    assert any(name in build_names for name in from_stages), "copy the venv from the build stage"
    context_sources = [src for sources, _ in copies_from(final) for src in sources]
    assert context_sources, "the runtime stage copies the models"
    for source in context_sources:
        assert source.rstrip("/") == "models", f"the runtime stage copies {source}"
    assert final.all("ADD") == []
    for run in final.all("RUN"):
        assert not re.search(r"\b(apt-get|apt|apk|pip3?)\s+install\b", run.value), run.value


def test_model_dir_is_where_the_models_are_copied(dockerfile: Dockerfile) -> None:
    env: dict[str, str] = {}
    for instruction in dockerfile.final.all("ENV"):
        env.update(parse_assignments(instruction.value))
    workdir = dockerfile.final.last("WORKDIR")
    assert workdir is not None
    ((_, destination),) = copies_from(dockerfile.final)
    destination = os.path.normpath(os.path.join(workdir.value, destination))
    assert env["MODEL_DIR"] == destination
    for name in env:
        if not name.startswith(("PYTHON", "PATH")):
            assert name.lower() in Settings.model_fields, f"ENV {name} is not a setting"


def test_pip_installs_are_not_editable_and_leave_no_cache(dockerfile: Dockerfile) -> None:
    runs = [run for stage in dockerfile.stages for run in pip_install_runs(stage)]
    assert runs, "no pip install in the Dockerfile"
    for run in runs:
        for command in re.findall(r"\bpip3?\s+install\b[^;&|]*", run.value):
            assert "--no-cache-dir" in command, command
            assert not re.search(r"\s(-e|--editable)\b", command), command


@pytest.fixture
def stub_pip(tmp_path: Path) -> tuple[Path, Path]:
    """A ``pip`` that only writes down its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    args_file = tmp_path / "pip-args"
    (bin_dir / "pip").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{args_file}"\n')
    (bin_dir / "pip").chmod(0o755)
    return bin_dir, args_file


@pytest.mark.parametrize(("flavor", "target"), [(None, "."), ("cpu", "."), ("gpu", "./[gpu]")])
def test_flavor_build_arg_selects_the_tensorflow_extra(
    dockerfile: Dockerfile,
    stub_pip: tuple[Path, Path],
    tmp_path: Path,
    flavor: str | None,
    target: str,
) -> None:
    build = dockerfile.stages[0]
    args: dict[str, str] = {}
    for instruction in build.all("ARG"):
        args.update(parse_assignments(instruction.value))
    assert args.get("FLAVOR") == "cpu", "CPU is the default flavour"
    if flavor is not None:
        args["FLAVOR"] = flavor
    bin_dir, args_file = stub_pip
    env = {"PATH": f"{bin_dir}:{IMAGE_PATH}", **args}
    command = ["/bin/sh", "-c", flavor_run(dockerfile).value]
    subprocess.run(command, cwd=tmp_path, env=env, check=True, timeout=30)
    pip_args = args_file.read_text().split()
    assert pip_args[0] == "install"
    assert pip_args[-1] == target
    assert (target == "./[gpu]") == any("[gpu]" in arg for arg in pip_args)


def test_unknown_flavor_fails_the_build(
    dockerfile: Dockerfile, stub_pip: tuple[Path, Path], tmp_path: Path
) -> None:
    bin_dir, args_file = stub_pip
    env = {"PATH": f"{bin_dir}:{IMAGE_PATH}", "FLAVOR": "tpu"}
    command = ["/bin/sh", "-c", flavor_run(dockerfile).value]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, timeout=30)
    assert result.returncode != 0
    assert not args_file.exists()


def _ignored(relative: str, patterns: list[str]) -> bool:
    """Enough of .dockerignore's matching for this project: exclusions, no `!` exceptions."""
    parts = Path(relative).parts
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatch("/".join(parts[: i + 1]), pattern) for i in range(len(parts))):
            return True
    return False


def test_dockerignore_keeps_the_context_small_and_lets_the_copies_through(
    dockerfile: Dockerfile,
) -> None:
    patterns = read_dockerignore()
    assert not any(p.startswith("!") for p in patterns), "teach _ignored() about exceptions"
    for path in (".venv", ".git", "tests", "data", "bench", ".pytest_cache", ".ruff_cache"):
        assert _ignored(path, patterns), f"{path} is in the build context"
    assert _ignored("app/__pycache__/main.cpython-311.pyc", patterns)
    for stage in dockerfile.stages:
        for sources, _ in copies_from(stage):
            for source in sources:
                assert not _ignored(source.rstrip("/"), patterns), f"COPY {source} is ignored"
                assert (ROOT / source).exists(), f"COPY {source}: no such path"


# ---------------------------------------------------------------------------------------------
# The replay


@dataclass
class Replay:
    """A Dockerfile run "for real" under ``root`` instead of ``/``, without a container."""

    root: Path
    context: Path = ROOT
    build_args: dict[str, str] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # `python` before any venv exists: this interpreter's base Python, as the image has.
        self.shims = self.root / "_shims"
        self.shims.mkdir(parents=True)
        base_python = Path(sys.base_prefix) / "bin" / f"python{PYTHON}"
        assert base_python.is_file(), base_python
        for name in ("python", "python3", f"python{PYTHON}"):
            (self.shims / name).symlink_to(base_python)

    def image_paths(self, dockerfile: Dockerfile) -> list[str]:
        """Absolute paths the Dockerfile names (WORKDIRs, COPY ends): rewritten under root."""
        paths = set()
        for stage in dockerfile.stages:
            for instruction in stage.all("WORKDIR"):
                paths.add(instruction.value)
            for instruction in stage.all("COPY"):
                _, parts = split_flags(instruction.value)
                paths.update(p.rstrip("/") for p in parts if p.startswith("/"))
        return sorted(paths, key=len, reverse=True)

    def rewrite(self, text: str, paths: list[str]) -> str:
        for path in paths:
            pattern = rf"(?<![\w./-]){re.escape(path)}(?![\w.-])"
            text = re.sub(pattern, (str(self.root) + path).replace("\\", "\\\\"), text)
        return text

    def host(self, image_path: str, workdir: Path) -> Path:
        if image_path.startswith("/"):
            return self.root / image_path.lstrip("/")
        return workdir / image_path

    def base_env(self) -> dict[str, str]:
        """The machine's environment (pip's index settings and so on) as a fresh image's: no
        virtualenv, none of the app's settings, the image's PATH with our `python`."""
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "PATH"}
            and key.lower() not in Settings.model_fields
        }
        env["PATH"] = f"{self.shims}:{IMAGE_PATH}"
        env["HOME"] = str(self.root / "_home")
        Path(env["HOME"]).mkdir(exist_ok=True)
        return env

    def copy(self, instruction: Instruction, workdir: Path, paths: list[str]) -> None:
        flags, parts = split_flags(instruction.value)
        *sources, destination = parts
        into_dir = destination.endswith("/") or len(sources) > 1
        dest = self.host(destination, workdir)
        for source in sources:
            src = self.root / source.lstrip("/") if "from" in flags else self.context / source
            target = dest / src.name if into_dir and src.is_file() else dest
            if src.resolve() == target.resolve():
                continue  # COPY --from=build /opt/venv /opt/venv: one root serves every stage
            if src.is_dir():
                shutil.copytree(
                    src, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)
        self.log.append(f"COPY {instruction.value}")

    def run_stage(
        self, dockerfile: Dockerfile, stage: Stage, *, run_steps: bool
    ) -> tuple[dict[str, str], Path]:
        """Replay one stage; returns its final environment and working directory."""
        paths = self.image_paths(dockerfile)
        env = self.base_env()
        workdir = self.root
        for instruction in stage.instructions:
            keyword = instruction.keyword
            if keyword == "ARG":
                for key, default in parse_assignments(instruction.value).items():
                    env[key] = self.build_args.get(key, dockerfile.global_args.get(key, default))
            elif keyword == "ENV":
                for key, value in parse_assignments(instruction.value).items():
                    value = substitute(value, env)
                    env[key] = self.rewrite(value, paths)
            elif keyword == "WORKDIR":
                workdir = self.host(substitute(instruction.value, env), workdir)
                workdir.mkdir(parents=True, exist_ok=True)
            elif keyword == "COPY":
                self.copy(instruction, workdir, paths)
            elif keyword == "RUN":
                self.run(instruction, env, workdir, paths, run_steps=run_steps)
        return env, workdir

    def run(
        self,
        instruction: Instruction,
        env: dict[str, str],
        workdir: Path,
        paths: list[str],
        *,
        run_steps: bool,
    ) -> None:
        if not run_steps:
            commands = {
                word
                for part in re.split(r"&&|\|\||;", instruction.value)
                for word in part.split()[:1]
            }
            assert commands <= IMAGE_ONLY_COMMANDS, (
                f"Dockerfile:{instruction.line}: the replay cannot skip {commands}; "
                "replay that step in tests/docker/test_dockerfile_install.py"
            )
            self.log.append(f"skipped RUN {instruction.value}")
            return
        argv = instruction.exec_form() or ["/bin/sh", "-c", instruction.value]
        argv = [self.rewrite(arg, paths) for arg in argv]
        started = time.monotonic()
        result = subprocess.run(
            argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=600
        )
        self.log.append(f"RUN {argv} ({time.monotonic() - started:.0f} s)")
        assert result.returncode == 0, (
            f"Dockerfile:{instruction.line} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def image_root() -> Iterator[Path]:
    """A scratch "/" for the replay, removed afterwards: the venv is 2 GB in 30,000 files.

    Removing them takes from 20 s to over a minute on a busy disk, so ``rm`` does it in the
    background while the test run goes on.
    """
    root = Path(tempfile.mkdtemp(prefix="dockerfile-replay-"))
    try:
        yield root
    finally:
        subprocess.Popen(
            ["rm", "-rf", "--", str(root)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


@pytest.mark.slow
def test_dockerfile_install_serves_and_stops_cleanly(
    dockerfile: Dockerfile, image_root: Path
) -> None:
    replay = Replay(image_root)
    final = dockerfile.final
    for stage in dockerfile.stages[:-1]:
        replay.run_stage(dockerfile, stage, run_steps=True)
    env, workdir = replay.run_stage(dockerfile, final, run_steps=False)

    # CMD as the container runs it: `python` from the image's PATH, in WORKDIR.
    cmd = final.last("CMD").exec_form()
    python = shutil.which(cmd[0], path=env["PATH"])
    assert python, env["PATH"]
    assert Path(python).is_relative_to(image_root), (python, env["PATH"])
    assert not Path(python).is_relative_to(replay.shims), "CMD's python is not the venv's"
    located = subprocess.run(
        [python, "-c", "import app; print(app.__file__)"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    message = f"`python -m app` would import {located}, not the installed package"
    assert "site-packages" in located, message
    assert Path(located).is_relative_to(image_root), message

    port = free_port()
    # Like `docker run -e PORT=... -e HOST=127.0.0.1`: a free port, and loopback only here.
    env = {**env, "PORT": str(port), "HOST": "127.0.0.1"}
    log_path = image_root / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [python, *cmd[1:]], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        started = time.monotonic()
        deadline = started + START_TIMEOUT_S
        status, body = 0, b""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, body = get(f"http://127.0.0.1:{port}/readyz")
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(0.5)
        server_log = log_path.read_text(errors="replace")[-4000:]
        assert status == 200, f"/readyz: {status} {body!r} (exit {proc.poll()})\n{server_log}"
        replay.log.append(f"CMD {cmd}: ready after {time.monotonic() - started:.0f} s")
        print("\n".join(replay.log))  # shown with -rP or -s: what ran, and how long it took
        assert b'"sentiment"' in body, body
        assert b'"digits"' in body, body

        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(STOP_TIMEOUT_S)
        server_log = log_path.read_text(errors="replace")[-4000:]
        assert returncode == 0, f"exit status {returncode} after SIGTERM\n{server_log}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
