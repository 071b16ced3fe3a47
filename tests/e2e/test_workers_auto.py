"""``WORKERS=auto`` through ``python -m app``: the number app.workers decides for this machine is
what uvicorn starts, the log says why, and every worker's own log lines reach the log."""

from __future__ import annotations

import re
import time
from pathlib import Path

from app.workers import decide, read_resources
from tests.support.server import server_log, start_server, stop_server

MODELS = Path(__file__).resolve().parents[2] / "models"


def worker_processes(pid: int) -> list[int]:
    """uvicorn's workers: children of ``pid`` started by multiprocessing's spawn."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rpartition(")")[2].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def test_python_m_app_starts_the_workers_auto_decides() -> None:
    expected = decide(read_resources(), "auto").workers
    proc, _ = start_server(
        {"MODEL_DIR": str(MODELS), "WORKERS": "auto", "DEVICE": "auto"},
        python_m_app=True,
        ready_timeout_s=120,
    )
    try:
        log = server_log(proc)
        assert re.search(rf"WORKERS=auto: {expected} \(\d+ CPUs? to run on", log), log[-3000:]
        if expected > 1:
            deadline = time.monotonic() + 30
            while len(worker_processes(proc.pid)) < expected and time.monotonic() < deadline:
                time.sleep(0.2)
            assert len(worker_processes(proc.pid)) == expected, server_log(proc)[-3000:]
        else:
            assert "Started parent process" not in log, "one worker runs in the main process"
        # Each worker logs its start-up (logging.basicConfig alone reached the parent only).
        deadline = time.monotonic() + 120
        while server_log(proc).count("INFO: app: ready:") < expected:
            assert time.monotonic() < deadline, server_log(proc)[-3000:]
            time.sleep(0.5)
    finally:
        assert stop_server(proc) == 0
