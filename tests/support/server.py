"""Start a real uvicorn process on a free port for tests, and stop it.

``start_server(env)`` runs ``python -m uvicorn --factory app.main:tuned_app`` (the app as
``python -m app`` builds it, process tuning included), another ``module:app`` target, or
``python -m app`` itself, with the given environment on top of this one, waits until
``GET /readyz`` answers 200 and returns the process and its base URL. The server's output goes
to a log file (``proc.log_path``; ``server_log(proc)`` reads it) so that a full pipe never
blocks it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def default_settings() -> dict[str, str]:
    """Every setting at its default, as environment variables.

    ``tests/conftest.py`` sets them, where the shell has not: the app under test reads a
    ``.env`` in the repository folder too, and a developer's (``LOG_LEVEL=warning`` hides the
    access log some tests read, ``API_KEYS`` locks most of them out) would fail the suite.
    Environment variables beat ``.env``.
    """
    values = {}
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, bool):
            text = str(default).lower()
        elif isinstance(default, list):
            text = ",".join(map(str, default))
        else:
            text = str(default)
        values[name.upper()] = text
    return values


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    env: dict[str, str] | None = None,
    port: int | None = None,
    *,
    target: str | None = None,
    python_m_app: bool = False,
    args: tuple[str, ...] = (),
    ready_timeout_s: float = 60.0,
) -> tuple[subprocess.Popen, str]:
    """Start a server and wait for ``/readyz``; raises RuntimeError (with its log) if it fails.

    ``python_m_app=True`` runs the production entry point ``python -m app`` (HOST/PORT from the
    environment); otherwise ``python -m uvicorn <target> --host 127.0.0.1 --port N *args``, the
    target by default the tuned app factory.
    """
    port = port or free_port()
    full_env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    if python_m_app:
        command = [sys.executable, "-m", "app"]
    else:
        command = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1"]
        command += [target] if target else ["--factory", "app.main:tuned_app"]
        command += ["--port", str(port), *args]
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the process
        prefix=f"server-{port}-", suffix=".log", delete=False
    )
    proc = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = log.name  # type: ignore[attr-defined]
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode} during start-up:\n{server_log(proc)[-4000:]}"
            )
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    stop_server(proc)
    raise RuntimeError(f"server not ready after {ready_timeout_s:g} s:\n{server_log(proc)[-4000:]}")


def stop_server(proc: subprocess.Popen, timeout_s: float = 30.0) -> int | None:
    """SIGTERM, wait for a graceful exit, SIGKILL if it takes longer; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def server_log(proc: subprocess.Popen) -> str:
    path = getattr(proc, "log_path", None)
    return Path(path).read_text(errors="replace") if path else ""


def rss_kib(proc: subprocess.Popen) -> int:
    """Resident memory of the server process (Linux ``/proc``), in KiB."""
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {proc.pid}")


def model_calls(fault_file: Path, model: str) -> list[int]:
    """Instances of each call that reached ``model`` so far, in order: the ``<model>
    <instances>`` lines ``tests.support.faulty_app`` appends to ``<fault_file>.calls``."""
    path = fault_file.with_name(fault_file.name + ".calls")
    lines = path.read_text().splitlines() if path.exists() else []
    return [int(n) for name, n in (line.split() for line in lines) if name == model]


def metric_total(
    url: str, name: str, headers: dict[str, str] | None = None, **labels: str
) -> float:
    """The sum of the server's ``/metrics`` samples called ``name`` with these labels (0 if
    none)."""
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    response.raise_for_status()
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )
