"""Build the project's Dockerfile with Podman and run the image's command with Buildah.

Everything the build needs, done by the test itself so that a fresh machine can run it: the
tools (``apt-get install podman buildah debootstrap`` when ``CI=true``), a stand-in for the
base image (so that no registry is needed: a minimal Debian with its Python, made with
debootstrap and tagged with the official name, so the Dockerfile needs no change),
the build (``podman build --isolation=chroot --network host``), and containers run with
``buildah run --isolation chroot``, which shares the host's network: the server answers on
``127.0.0.1``. ``podman run`` needs an OCI runtime with cgroups, which a container or sandbox
may not give, so Buildah stands in for it.

What lasts between runs on one machine: the stand-in base (made once, found by its name) and
Podman's layer cache. The built image is tagged per run and removed afterwards; its layers
stay in the cache.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from container_files import ROOT

from tests.support.ci import in_ci

TOOLS = ("podman", "buildah", "debootstrap")
CONTAINERS_CONF = Path(__file__).with_name("containers.conf")
# Debian's release whose Python is the Dockerfile's PYTHON_VERSION (bookworm: 3.11).
DEBIAN_SUITES = {"3.11": "bookworm"}
DEFAULT_MIRROR = "http://deb.debian.org/debian"
LOCK_FILE = Path(tempfile.gettempdir()) / "keras-inference-service-base.lock"
STAND_IN_LABEL = "io.keras-inference-service.stand-in"


def unavailable(reason: str) -> None:
    """A missing prerequisite: a failure in CI, a skip with the reason elsewhere."""
    if in_ci():
        pytest.fail(f"the image test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"{reason} (CI=true installs what it can and fails instead)")


def ensure_tools() -> None:
    """Podman, Buildah and debootstrap on PATH; in CI, apt-get installs whichever is missing."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not missing:
        return
    command = f"apt-get install -y {' '.join(TOOLS)}"
    if not in_ci():
        unavailable(f"{', '.join(missing)} not installed ({command} as root)")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        unavailable(f"{', '.join(missing)} not installed, and {command} needs root and apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "update"], command.split()):
        result = subprocess.run(step, env=env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            unavailable(
                f"`{' '.join(step)}` failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
    still = [tool for tool in TOOLS if shutil.which(tool) is None]
    if still:
        unavailable(f"{', '.join(still)} still missing after {command}")


def engine_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def run(
    command: list[str], timeout: float = 120, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """A podman/buildah command that must succeed; its output in the failure message."""
    result = subprocess.run(
        command, env=engine_env(), capture_output=True, text=True, timeout=timeout, **kwargs
    )
    assert result.returncode == 0, (
        f"`{' '.join(command)}` exited {result.returncode}:\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def image_exists(name: str) -> bool:
    return (
        subprocess.run(["podman", "image", "exists", name], env=engine_env(), timeout=60).returncode
        == 0
    )


def inspect(image: str) -> dict[str, Any]:
    """``podman image inspect``: Size, Config (User, Cmd, Env, Healthcheck), ..."""
    (info,) = json.loads(run(["podman", "image", "inspect", image]).stdout)
    return info


def full_name(base: str) -> str:
    """``python:3.11-slim`` -> ``docker.io/library/python:3.11-slim``, as Podman resolves it."""
    if "/" not in base.split(":")[0]:
        base = f"library/{base}"
    if "." not in base.split("/")[0]:
        base = f"docker.io/{base}"
    return base


def debian_mirror() -> str:
    """The machine's Debian mirror (deb822 ``URIs:`` or a ``deb`` line), else Debian's own."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        for uri in re.findall(r"^URIs:\s*(\S+)", sources.read_text(), flags=re.MULTILINE):
            if not uri.rstrip("/").endswith("-security"):
                return uri
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file():
        match = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+\S+", legacy.read_text(), re.MULTILINE)
        if match:
            return match[1]
    return DEFAULT_MIRROR


def ensure_base(base: str, python_version: str) -> float | None:
    """The Dockerfile's base image, or a stand-in made with debootstrap under its name.

    The stand-in is a minimal Debian with Debian's Python (in /usr/bin; the official image has
    its own build in /usr/local), pip's certificate bundle the host's (package installs in the
    build go through the same proxy as the host's), and no apt lists, caches, docs or locales,
    like the official slim image. A lock keeps two test runs from making it at once. Returns
    the seconds it took to make, None if it was there.
    """
    name = full_name(base)
    if image_exists(name):
        return None
    suite = DEBIAN_SUITES.get(python_version)
    assert suite, (
        f"no Debian release known to ship Python {python_version}; add it to DEBIAN_SUITES"
    )
    if os.geteuid() != 0:
        unavailable(f"{name} is not there, and making a stand-in with debootstrap needs root")
    with LOCK_FILE.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image_exists(name):  # made by a run that held the lock before us
            return None
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="stand-in-", dir="/var/tmp") as tmp:
            rootfs = Path(tmp) / "rootfs"
            packages = "python3,python3-venv,python-is-python3,ca-certificates"
            command = ["debootstrap", "--variant=minbase", f"--include={packages}", suite]
            result = subprocess.run(
                [*command, str(rootfs), debian_mirror()],
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if result.returncode != 0:
                unavailable(f"debootstrap failed ({result.returncode}):\n{result.stdout[-3000:]}")
            for junk in ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
                for path in (rootfs / junk).glob("*"):
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
            shutil.rmtree(rootfs / "usr/share/locale", ignore_errors=True)
            shutil.copy("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/")
            (rootfs / "etc/pip.conf").write_text(
                "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"
            )
            changes = [
                'CMD ["python3"]',
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                f"LABEL {STAND_IN_LABEL}=debootstrap-{suite}",
            ]
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            run(
                ["podman", "import", *(f"--change={c}" for c in changes), "-", name],
                timeout=600,
                stdin=tar.stdout,
            )
            assert tar.stdout is not None
            tar.stdout.close()
            assert tar.wait() == 0, "tar of the stand-in's files failed"
    return time.monotonic() - started


def build(tag: str, log_path: Path, build_args: dict[str, str] | None = None) -> float:
    """``podman build`` of the Dockerfile; returns the seconds it took."""
    args = [f"--build-arg={key}={value}" for key, value in (build_args or {}).items()]
    command = [
        "podman", "build", "--isolation=chroot", "--network=host",
        "--format=docker",  # the OCI format would drop HEALTHCHECK
        *args, f"--tag={tag}", str(ROOT),
    ]  # fmt: skip
    started = time.monotonic()
    with log_path.open("w") as log:
        result = subprocess.run(
            command, env=engine_env(), stdout=log, stderr=subprocess.STDOUT, timeout=3600
        )
    seconds = time.monotonic() - started
    assert result.returncode == 0, (
        f"podman build exited {result.returncode}:\n{log_path.read_text()[-5000:]}"
    )
    return seconds


@dataclass
class Container:
    """A Buildah working container of an image: ``buildah run`` in it, mount its files."""

    name: str

    def run(
        self,
        command: list[str],
        *,
        user: str,
        env: dict[str, str] | None = None,
        volumes: tuple[str, ...] = (),
        **popen: Any,
    ) -> subprocess.Popen[bytes]:
        """``buildah run`` the command as ``user``, with the image's environment plus ``env``."""
        options = ["--isolation=chroot", f"--user={user}"]
        options += [f"--env={key}={value}" for key, value in (env or {}).items()]
        options += [f"--volume={volume}" for volume in volumes]
        return subprocess.Popen(
            ["buildah", "run", *options, self.name, "--", *command], env=engine_env(), **popen
        )

    @contextmanager
    def files(self) -> Iterator[Path]:
        """The container's root folder, mounted on the host."""
        path = Path(run(["buildah", "mount", self.name]).stdout.strip())
        try:
            yield path
        finally:
            run(["buildah", "umount", self.name])


@contextmanager
def container(image: str) -> Iterator[Container]:
    name = run(["buildah", "from", "--pull-never", image]).stdout.strip().splitlines()[-1]
    try:
        yield Container(name)
    finally:
        run(["buildah", "rm", name])


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        if int(text.rpartition(")")[2].split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def descendants(pid: int) -> list[int]:
    result, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        result += kids
        todo += kids
    return result


def argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def uids(pid: int) -> list[int]:
    """Real, effective, saved and filesystem uid of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(value) for value in line.split()[1:]]
    raise AssertionError(f"no Uid line for process {pid}")


def rss_mib(pid: int) -> float:
    """Resident memory of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS line for process {pid}")
