"""The lock files (requirements/, ``make lock``) agree with pyproject.toml and with each other.

A dependency added to pyproject.toml without ``make lock`` fails here, before an install from
the stale lock does; so does an image lock whose versions drift from what the tests ran on.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "requirements"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")


@dataclass
class Pin:
    version: Version
    hashes: int


def read_lock(name: str) -> dict[str, list[Pin]]:
    """Package -> its pins (a universal lock may pin two versions, under different markers)."""
    pins: dict[str, list[Pin]] = {}
    current: Pin | None = None
    for line in (LOCKS / name).read_text().splitlines():
        if match := PIN.match(line):
            current = Pin(Version(match["version"]), 0)
            pins.setdefault(canonicalize_name(match["name"]), []).append(current)
        elif "--hash=sha256:" in line and current is not None:
            current.hashes += 1
        elif line.strip() and not line.lstrip().startswith("#"):
            pytest.fail(f"{name}: a line that is neither a pin nor a hash: {line!r}")
    return pins


def version(pins: dict[str, list[Pin]], name: str) -> Version:
    (pin,) = pins[name]
    return pin.version


@pytest.fixture(scope="module")
def project() -> dict[str, list[Requirement]]:
    """pyproject.toml's requirements: "" for the dependencies, then each extra."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"": table["dependencies"], **table["optional-dependencies"]}
    return {group: [Requirement(r) for r in reqs] for group, reqs in groups.items()}


@pytest.fixture(scope="module")
def dev() -> dict[str, list[Pin]]:
    return read_lock("dev.txt")


@pytest.mark.parametrize("name", ["dev.txt", "image-cpu.txt", "image-gpu.txt"])
def test_every_pin_has_hashes(name: str) -> None:
    pins = read_lock(name)
    assert pins
    unhashed = [p for p, versions in pins.items() for pin in versions if pin.hashes == 0]
    assert not unhashed, f"{name}: pins without a hash: {unhashed}"


def test_dev_lock_satisfies_the_dependencies_and_the_dev_extra(
    project: dict[str, list[Requirement]], dev: dict[str, list[Pin]]
) -> None:
    for requirement in project[""] + project["dev"]:
        name = canonicalize_name(requirement.name)
        assert name in dev, f"{requirement} is not in dev.txt: run `make lock`"
        for pin in dev[name]:
            assert requirement.specifier.contains(pin.version, prereleases=True), (
                f"dev.txt pins {name}=={pin.version}, pyproject.toml wants {requirement}: "
                "run `make lock`"
            )


@pytest.mark.parametrize(
    ("name", "tensorflow"), [("image-cpu.txt", "tensorflow-cpu"), ("image-gpu.txt", "tensorflow")]
)
def test_image_locks_hold_the_dependencies_at_the_dev_versions(
    project: dict[str, list[Requirement]], dev: dict[str, list[Pin]], name: str, tensorflow: str
) -> None:
    image = read_lock(name)
    for requirement in project[""]:
        wanted = tensorflow if requirement.name == "tensorflow" else requirement.name
        assert canonicalize_name(wanted) in image, f"{wanted} is not in {name}: run `make lock`"
    assert version(image, tensorflow) == version(dev, "tensorflow"), "one TensorFlow release"
    for package, pins in image.items():
        if package in dev and len(dev[package]) == 1:
            assert [p.version for p in pins] == [dev[package][0].version], (
                f"{name} pins {package} at {pins[0].version}, dev.txt at {dev[package][0].version}"
            )
    assert "libclang" not in image, "serving does not load libclang"
    for tool in ("pytest", "ruff", "uv", "hypothesis", "matplotlib"):
        assert tool not in image, f"{tool} (a dev tool) in {name}"


def test_cpu_image_has_tensorflow_cpu_and_gpu_image_cuda() -> None:
    cpu, gpu = read_lock("image-cpu.txt"), read_lock("image-gpu.txt")
    assert "tensorflow" not in cpu, "tensorflow-cpu replaces it: both would install tensorflow/"
    assert not [p for p in cpu if p.startswith("nvidia-")]
    assert [p for p in gpu if p.startswith("nvidia-cudnn")], "tensorflow[and-cuda]'s CUDA wheels"
