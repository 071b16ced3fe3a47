"""The CPU image, for real: built from the Dockerfile with Podman, its own command run as its
own user, the way ``docker compose up`` runs it.

Checks: the image's size and that it holds no compilers, caches or test suites; ``/readyz``
with both models; the processes' uid; ``WORKERS=auto`` (the image's default) started a worker
per CPU here; one prediction per model equal to the in-process answer; the models served from
a read-only mount of a host folder; the image's ``HEALTHCHECK`` command passing (and failing
once the server is gone); SIGTERM ending it with status 0 within Compose's grace period.

Prerequisites (``podman_build.py``): Podman, Buildah and debootstrap, installed with apt-get
when ``CI=true`` (missing tools fail the test there and skip it elsewhere), and root to make
the stand-in base image. Prints the build time, the image's size and the time to ready
(``-s`` or ``-rP`` shows them).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import subprocess
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from container_files import ROOT, load_compose, parse_dockerfile, substitute
from fastapi.testclient import TestClient
from podman_build import (
    Container,
    argv,
    build,
    container,
    descendants,
    ensure_base,
    ensure_tools,
    inspect,
    rss_mib,
    run,
    uids,
)

from app.workers import decide, read_resources
from tests.conftest import png
from tests.support.server import free_port

# The first test waits for the build: from empty Podman storage, the stand-in base image and
# the image itself (and, in CI, installing Podman): far past the suite's 300 s per test.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

MAX_IMAGE_BYTES = 1_300_000_000  # the CPU flavour's budget (issue 18), as Podman counts size
READY_TIMEOUT_S = 180
SERVED_VERSION = 7  # the host folder's models are version 7; the image's own are version 1
REVIEW = "A wonderful, moving film. The acting is superb and the story is beautiful."
COMPILERS = ("cc", "gcc", "g++", "c++", "clang", "ld", "as", "strip", "make")


def grace_period_s() -> float:
    """Compose's ``stop_grace_period`` for the CPU service, with nothing set in the shell."""
    value = substitute(str(load_compose()["services"]["api"]["stop_grace_period"]), {})
    match = re.fullmatch(r"(\d+)s", value)
    assert match, f"teach grace_period_s() to read {value!r}"
    return float(match[1])


@dataclass
class Image:
    ref: str  # what buildah and podman are given
    info: dict[str, Any]  # podman image inspect
    build_s: float

    @property
    def config(self) -> dict[str, Any]:
        return self.info["Config"]

    def env(self, name: str, default: str | None = None) -> str:
        for item in self.config.get("Env") or []:
            key, _, value = item.partition("=")
            if key == name:
                return value
        if default is None:
            raise KeyError(f"the image sets no {name}")
        return default


@dataclass
class Server:
    container: Container
    process: subprocess.Popen[bytes]  # buildah run
    pid: int  # the image's CMD, inside the container
    url: str
    ready_s: float
    log_path: Path
    env: dict[str, str]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    ensure_tools()
    dockerfile = parse_dockerfile()
    python_version = dockerfile.global_args["PYTHON_VERSION"]
    bases = {stage.base for stage in dockerfile.stages}
    assert len(bases) == 1, f"one base image for every stage, not {bases}"
    base_s = ensure_base(bases.pop(), python_version)
    if base_s is not None:
        print(f"\nstand-in base image made in {base_s:.0f} s")
    tag = f"localhost/keras-inference-service:test-{uuid.uuid4().hex[:12]}"
    log_path = tmp_path_factory.mktemp("image") / "build.log"
    build_s = build(tag, log_path)
    try:
        yield Image(tag, inspect(tag), build_s)
    finally:
        run(["podman", "rmi", tag], timeout=300)


@pytest.fixture(scope="module")
def host_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed models' latest versions in a host folder, as version 7: a version the
    image does not hold."""
    folder = tmp_path_factory.mktemp("host-models") / "models"
    for model in sorted((ROOT / "models").iterdir()):
        latest = max((v for v in model.iterdir() if v.name.isdigit()), key=lambda v: int(v.name))
        shutil.copytree(latest, folder / model.name / str(SERVED_VERSION))
    folder.chmod(0o755)
    return folder


@contextlib.contextmanager
def serving(image: Image, host_models: Path, log_path: Path) -> Iterator[Server]:
    """The image's CMD as the image's USER, the models mounted read-only where MODEL_DIR points:
    like ``docker run -e PORT=... -e HOST=127.0.0.1 -v folder:/app/models:ro``."""
    port = free_port()
    env = {"PORT": str(port), "HOST": "127.0.0.1"}
    volume = f"{host_models}:{image.env('MODEL_DIR')}:ro"
    cmd = image.config["Cmd"]
    with container(image.ref) as ctr, log_path.open("wb") as log:
        started = time.monotonic()
        process = ctr.run(
            cmd, user=image.config["User"], env=env, volumes=(volume,), stdout=log, stderr=log
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(process, url, log_path)
            ready_s = time.monotonic() - started
            print(
                f"\nimage built in {image.build_s:.0f} s; ready {ready_s:.1f} s after buildah run"
            )
            yield Server(ctr, process, cmd_pid(process, cmd), url, ready_s, log_path, env)
        finally:
            stop(process)


@pytest.fixture(scope="module")
def server(
    image: Image, host_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server for the tests that only talk to it (in any order: none of them stops it)."""
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with serving(image, host_models, log_path) as started:
        yield started


@pytest.fixture
def server_to_stop(image: Image, host_models: Path, tmp_path: Path) -> Iterator[Server]:
    """A server of its own for a test that stops it, so the shared one keeps serving."""
    with serving(image, host_models, tmp_path / "server.log") as started:
        yield started


def wait_ready(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    status = None
    while time.monotonic() < deadline and process.poll() is None:
        try:
            status = httpx.get(f"{url}/readyz", timeout=2).status_code
        except httpx.HTTPError:
            status = None
        if status == 200:
            return
        time.sleep(0.5)
    stop(process)
    log = log_path.read_text(errors="replace")[-4000:]
    raise AssertionError(f"/readyz: {status}, buildah run exited {process.poll()}:\n{log}")


def cmd_pid(process: subprocess.Popen[bytes], cmd: list[str]) -> int:
    """The process of the image's CMD under ``buildah run`` (which runs it in a child)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for pid in descendants(process.pid):
            args = argv(pid)
            if args and Path(args[0]).name == cmd[0] and args[1:] == cmd[1:]:
                return pid
        time.sleep(0.2)
    raise AssertionError(f"no process {cmd} under buildah run {process.pid}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Whatever still runs under ``buildah run``: SIGTERM, then SIGKILL after a while."""
    if process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
        for pid in [*descendants(process.pid), process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        try:
            process.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def health(image: Image, server: Server) -> subprocess.CompletedProcess[bytes]:
    """The image's HEALTHCHECK command, in a container of the image with the server's env (as
    Docker runs it: in the container, as its user)."""
    check = image.info.get("Healthcheck") or image.config.get("Healthcheck")  # Podman, Docker
    assert check, "the image has no HEALTHCHECK (built in the OCI format?)"
    test = check["Test"]
    assert test[0] == "CMD", f"exec form, no shell: {test}"
    with container(image.ref) as ctr:
        process = ctr.run(
            test[1:], user=image.config["User"], env=server.env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        output, _ = process.communicate(timeout=60)
    return subprocess.CompletedProcess(test, process.returncode, output)


def predictions(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def digit_png() -> bytes:
    """A hand-drawn-like 7: a bar across the top and a stroke down, light on dark."""
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[5:8, 6:22] = 255
    for row in range(8, 24):
        column = 21 - (row - 8) // 2
        pixels[row, column - 1 : column + 2] = 255
    return png(pixels)


# ---------------------------------------------------------------------------------------------


def test_image_is_lean(image: Image) -> None:
    size = image.info["Size"]
    print(f"\nimage size {size / 1e9:.2f} GB ({size} bytes)")
    assert size <= MAX_IMAGE_BYTES, f"{size / 1e9:.2f} GB, over {MAX_IMAGE_BYTES / 1e9} GB"
    with container(image.ref) as ctr, ctr.files() as root:
        models = root / image.env("MODEL_DIR").lstrip("/")
        for name in ("digits", "sentiment"):
            assert list(models.glob(f"{name}/*/saved_model.pb")), f"no {name} in {models}"
        (site,) = root.glob("opt/venv/lib/python*/site-packages")
        assert (site / "tensorflow").is_dir(), "no TensorFlow in the venv"
        assert not (site / "tensorflow" / "include").exists(), "TensorFlow's C++ headers"
        assert not (site / "clang").exists(), "libclang"
        test_suites = [str(p.relative_to(site)) for p in site.glob("**/tests") if p.is_dir()]
        assert not test_suites, test_suites[:10]
        bins = [root / d for d in ("usr/bin", "usr/local/bin", "opt/venv/bin")]
        compilers = [str(b / c) for b in bins for c in COMPILERS if (b / c).exists()]
        assert not compilers, compilers
        caches = [p for p in (root / "root/.cache", root / "home/app/.cache") if p.exists()]
        assert not caches, caches
        # Every .pyc hash-based and unchecked (flags 0b01): the same bytes from build to build,
        # and nothing to re-validate or rewrite at run time.
        flags = {int.from_bytes(p.read_bytes()[4:8], "little") for p in site.glob("**/*.pyc")}
        assert flags == {0b01}, flags


def test_ready_as_the_images_user(image: Image, server: Server) -> None:
    response = httpx.get(f"{server.url}/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["models"] == {"digits": "AVAILABLE", "sentiment": "AVAILABLE"}
    assert "8000/tcp" in image.config["ExposedPorts"]
    assert image.env("PORT") == "8000"
    user = image.config["User"]
    assert user == "10001:10001", f"the image runs as {user!r}"
    processes = [server.pid, *descendants(server.pid)]
    for pid in processes:
        assert uids(pid) == [10001] * 4, f"process {pid} {argv(pid)}: uids {uids(pid)}"


def test_the_image_knows_the_project_s_version(server: Server) -> None:
    """The metadata the build stage makes from pyproject.toml: GET /v2 shows its version."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        expected = tomllib.load(file)["project"]["version"]
    assert httpx.get(f"{server.url}/v2").json()["version"] == expected
    assert httpx.get(f"{server.url}/openapi.json").json()["info"]["version"] == expected


def test_workers_auto_is_a_worker_per_cpu(image: Image, server: Server) -> None:
    """The image's default, WORKERS=auto, resolved here as app.workers resolves it for this
    machine (the container shares this process's cgroup and CPUs)."""
    assert image.env("WORKERS") == "auto"
    expected = decide(read_resources(), image.env("DEVICE", "auto")).workers
    assert f"WORKERS=auto: {expected} (" in server.log(), server.log()[-3000:]
    workers = [pid for pid in descendants(server.pid) if "spawn_main" in " ".join(argv(pid))]
    assert len(workers) == expected, [argv(pid) for pid in workers]
    rss = ", ".join(f"{rss_mib(pid):.0f}" for pid in workers or [server.pid])
    print(f"\nWORKERS=auto: {expected}; resident memory after ready: {rss} MiB")


def test_predictions_equal_the_in_process_answers(server: Server, client: TestClient) -> None:
    """tensorflow-cpu in the image, the dev environment's tensorflow in process: same answers."""
    review = {"reviews": [REVIEW]}
    image_answer = predictions(httpx.post(f"{server.url}/v1/sentiment/predict", json=review))
    local_answer = client.post("/v1/sentiment/predict", json=review).json()["predictions"]
    assert image_answer == local_answer
    files = {"file": ("seven.png", digit_png(), "image/png")}
    image_answer = predictions(httpx.post(f"{server.url}/v1/digits/predict", files=files))
    local_answer = client.post("/v1/digits/predict", files=files).json()["predictions"]
    assert image_answer == local_answer
    assert image_answer[0]["digit"] == 7


def test_models_come_from_the_read_only_host_folder(
    image: Image, server: Server, host_models: Path
) -> None:
    models = httpx.get(f"{server.url}/v1/models").json()["models"]
    assert {m["name"]: m["versions"] for m in models} == {
        "digits": [SERVED_VERSION],
        "sentiment": [SERVED_VERSION],
    }
    # Even root cannot write there: the mount itself is read-only.
    model_dir = image.env("MODEL_DIR")
    probe = f"open('{model_dir}/written-by-root', 'w')"
    with container(image.ref) as ctr:
        process = ctr.run(
            ["python", "-c", probe], user="0:0", volumes=(f"{host_models}:{model_dir}:ro",),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert f"[Errno {errno.EROFS}]" in output.decode(), output.decode()[-2000:]
    assert not (host_models / "written-by-root").exists()


def test_healthcheck_passes_while_ready(image: Image, server: Server) -> None:
    result = health(image, server)
    assert result.returncode == 0, result.stdout.decode()[-2000:]


def test_sigterm_exits_0_within_the_grace_period(image: Image, server_to_stop: Server) -> None:
    """``docker stop`` sends SIGTERM to the CMD's process (PID 1)."""
    server = server_to_stop
    grace_s = grace_period_s()
    started = time.monotonic()
    os.kill(server.pid, signal.SIGTERM)
    try:
        returncode = server.process.wait(grace_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {grace_s:g} s after SIGTERM:\n{server.log()[-3000:]}")
    print(f"\nstopped {time.monotonic() - started:.1f} s after SIGTERM")
    assert returncode == 0, f"exit status {returncode}:\n{server.log()[-3000:]}"
    # and the health check notices
    result = health(image, server)
    assert result.returncode != 0, "HEALTHCHECK passes with no server"
