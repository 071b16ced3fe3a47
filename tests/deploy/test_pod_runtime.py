"""The CPU pod of deploy/k8s, run for real under the restrictions its manifest sets.

No cluster here, so the test builds the pod's conditions around a real ``python -m app``: a
mount namespace (``unshare``) in which every filesystem is read-only
(``readOnlyRootFilesystem``) but a fresh tmpfs on ``/tmp`` (the ``emptyDir``), every capability
dropped and no privilege gain (``setpriv``: ``drop: [ALL]``, ``allowPrivilegeEscalation:
false``), and the environment the kubelet builds from the rendered manifests: the ConfigMap,
the API key from the Secret, and ``WORKERS`` as ``WORKERS=auto`` makes it for the CPU limit,
so that several processes share the metrics folder on ``/tmp``. Then it does what the cluster
would: waits for the startup probe within its budget, asks the readiness and liveness probes,
calls the API with and without the key, reads ``/metrics`` for the series the KEDA queries use,
and stops the server as the kubelet does after the preStop pause: SIGTERM, then an exit within
the rest of the grace period.

The server runs as root without capabilities, not as the image's uid 10001: the test's
interpreter may live under ``/root``, which only root may enter. Without capabilities root can
neither write a read-only filesystem nor pass file permissions it does not own, so what the
app may write is tested as strictly; whether uid 10001 can read the image's files is the
Dockerfile's business (tests/docker).
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from k8s_manifests import DEPLOY, ROOT, container_files, environment, quantity, rendered, workloads

from tests.support.ci import needs
from tests.support.server import free_port

# Inside the new mount namespace: everything read-only but /proc, /sys and /dev, a fresh
# tmpfs on /tmp, a check that it worked, then the server without capabilities. The folders of
# KEEP (the checkout, the interpreter) that lie under /tmp, as in a CI clone there, are bound
# back, read-only, from the old /tmp (still open as file descriptor 3) over the new one;
# --no-canonicalize, or mount would resolve the path through the new /tmp.
SANDBOX = r"""
set -eu
mount --make-rprivate /
for target in $(awk '{print $5}' /proc/self/mountinfo | grep -Ev '^/(proc|sys|dev)(/|$)' | sort -u); do
    mount -o remount,bind,ro "$target" 2>/dev/null || true
done
exec 3</tmp
mount -t tmpfs -o "size=$TMP_SIZE,mode=1777" tmpfs /tmp
for kept in $KEEP; do
    mkdir -p "$kept"
    mount --no-canonicalize --bind "/proc/self/fd/3/${kept#/tmp/}" "$kept"
    mount -o remount,bind,ro "$kept"
done
exec 3<&-
for path in / "$PWD" "$MODEL_DIR" "${HOME:-/}"; do
    if touch "$path/.k8s-pod-write-check" 2>/dev/null; then
        echo "sandbox: $path is writable" >&2
        exit 97
    fi
done
exec setpriv --inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"
"""


def _under_tmp(paths: list[Path]) -> list[str]:
    """The folders among ``paths`` that a tmpfs on /tmp would hide, none inside another."""
    tmp = Path("/tmp").resolve()
    hidden = sorted({p.resolve() for p in paths if p.resolve().is_relative_to(tmp)})
    kept = [p for p in hidden if not any(p != q and p.is_relative_to(q) for q in hidden)]
    return [str(Path("/tmp") / p.relative_to(tmp)) for p in kept]


def _sandbox_or_skip() -> None:
    missing = [tool for tool in ("unshare", "setpriv", "mount") if shutil.which(tool) is None]
    reason = f"missing {missing} (util-linux)" if missing else ""
    if not reason:
        probe = subprocess.run(
            ["unshare", "--mount", "true"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode != 0:
            reason = f"cannot make a mount namespace: {probe.stderr.strip()}"
    if reason:
        needs(
            f"the pod test needs Linux mount namespaces as root: {reason}",
            "run it as root on Linux with util-linux installed (apt-get install util-linux)",
        )


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    objects = rendered(DEPLOY / "k8s" / "overlays" / "cpu")
    (workload,) = workloads(objects)
    keda = rendered(DEPLOY / "k8s" / "overlays" / "keda")
    queries = [
        trigger["metadata"]["query"]
        for obj in keda
        if obj["kind"] == "ScaledObject"
        for trigger in obj["spec"]["triggers"]
        if trigger["type"] == "prometheus"
    ]
    return {
        "pod": workload.pod,
        "container": workload.container,
        "env": environment(objects, workload.container),
        "queries": queries,
    }


@contextmanager
def running_pod(
    manifest: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The server in its sandbox: {"process", "url", "api_key", "log", "workers"}."""
    _sandbox_or_skip()
    container = manifest["container"]
    files = container_files()
    image_env: dict[str, str] = {}
    for instruction in files.parse_dockerfile().final.all("ENV"):
        image_env.update(files.parse_assignments(instruction.value))
    api_key = secrets.token_hex(16)
    port = free_port()
    env = {
        **os.environ,
        **{k: v for k, v in image_env.items() if k.startswith("PYTHON")},
        **manifest["env"],
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "MODEL_DIR": str(ROOT / "models"),  # the image's /app/models
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    # The kubelet puts the Secret's value there; without the reference the pod has no key.
    secret = manifest["env"].get("API_KEYS", "").startswith("<secret ")
    env["API_KEYS"] = api_key if secret else ""
    if "WORKERS" not in manifest["env"]:  # WORKERS=auto: one per CPU of the limit
        env["WORKERS"] = str(math.ceil(quantity(container["resources"]["limits"]["cpu"])))
    (tmp_volume,) = [v for v in manifest["pod"]["volumes"] if v["name"] == "tmp"]
    env["TMP_SIZE"] = str(int(quantity(tmp_volume["emptyDir"]["sizeLimit"])))
    env["KEEP"] = " ".join(_under_tmp([ROOT, Path(sys.prefix), Path(sys.base_prefix)]))
    log_path = tmp_path_factory.mktemp("pod") / "server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            ["unshare", "--mount", "sh", "-c", SANDBOX, "sandbox", sys.executable, "-m", "app"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield {
            "process": process,
            "url": f"http://127.0.0.1:{port}",
            "api_key": api_key,
            "log": log_path,
            "workers": int(env["WORKERS"]),
        }
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def pod(
    manifest: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """One pod for the tests that leave it running."""
    with running_pod(manifest, tmp_path_factory) as running:
        yield running


def _log(pod: dict) -> str:
    return Path(pod["log"]).read_text()[-4000:]


def _probe(pod: dict, probe: dict[str, Any]) -> int | None:
    """One probe as the kubelet sends it: GET, its timeout; None if nothing answered."""
    try:
        response = httpx.get(pod["url"] + probe["httpGet"]["path"], timeout=probe["timeoutSeconds"])
    except httpx.HTTPError:
        return None
    return response.status_code


def wait_started(pod: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """``pod`` once its startup probe succeeded, within the probe's budget."""
    probe = manifest["container"]["startupProbe"]
    budget = (
        probe.get("initialDelaySeconds", 0) + probe["periodSeconds"] * probe["failureThreshold"]
    )
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        if pod["process"].poll() is not None:
            pytest.fail(f"the server exited ({pod['process'].returncode}):\n{_log(pod)}")
        if _probe(pod, probe) == 200:
            return pod
        time.sleep(0.5)
    pytest.fail(f"the startup probe did not succeed within {budget} s:\n{_log(pod)}")


@pytest.fixture(scope="module")
def started(pod: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """The module's pod once its startup probe succeeded."""
    return wait_started(pod, manifest)


@pytest.fixture
def started_to_stop(
    manifest: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A pod of its own for the test that stops it: the others may run after it, in any order."""
    with running_pod(manifest, tmp_path_factory) as pod:
        yield wait_started(pod, manifest)


def test_probes_answer_200_once_started(started: dict, manifest: dict[str, Any]) -> None:
    container = manifest["container"]
    for kind in ("readiness", "liveness"):
        assert _probe(started, container[f"{kind}Probe"]) == 200, kind


def test_api_key_from_the_secret_guards_the_api(started: dict) -> None:
    body = {"reviews": ["A wonderful, moving film."]}
    url = started["url"] + "/v1/sentiment/predict"
    assert httpx.post(url, json=body, timeout=30).status_code == 401
    answer = httpx.post(
        url, json=body, headers={"Authorization": f"Bearer {started['api_key']}"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0]["label"] in ("positive", "negative")


def test_metrics_have_the_series_keda_scales_on(started: dict, manifest: dict[str, Any]) -> None:
    text = httpx.get(started["url"] + "/metrics", timeout=30).text
    series = {name for query in manifest["queries"] for name in re.findall(r"\b([a-z_]+)\{", query)}
    assert "model_queue_depth" in series
    for name in series:
        assert re.search(rf"^{name}\{{", text, re.M), f"/metrics has no {name}"


def test_workers_keep_their_metrics_on_the_tmp_volume(started: dict) -> None:
    """prometheus-client's multiprocess files live on the emptyDir, the only writable place."""
    assert started["workers"] > 1, "the CPU pod runs several workers (WORKERS=auto)"
    tmp = Path(f"/proc/{started['process'].pid}/root/tmp")  # the sandbox's /tmp
    folders = [p for p in tmp.iterdir() if p.name.startswith("prometheus-")]
    assert len(folders) == 1, sorted(p.name for p in tmp.iterdir())
    assert any(folders[0].glob("*.db")), "no worker wrote its samples there"


def test_sigterm_after_the_pre_stop_pause_exits_within_the_grace_period(
    started_to_stop: dict, manifest: dict[str, Any]
) -> None:
    started = started_to_stop
    pre_stop = manifest["container"]["lifecycle"]["preStop"]["sleep"]["seconds"]
    left = manifest["pod"]["terminationGracePeriodSeconds"] - pre_stop
    process = started["process"]
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=left)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {left} s after SIGTERM: the kubelet would SIGKILL it")
    assert code == 0, _log(started)
    assert "is writable" not in _log(started)
