"""A server under test: ``python -m app`` in a child process, stopped with SIGINT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.loadgen import fetch

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
# Only warnings and errors from the service; ACCESS_LOG (its default unless set) decides the
# access lines.
LOG_LEVEL = "warning"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """``python -m app`` in a child process, with extra environment; stopped with SIGTERM."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "HOST": HOST,
            "PORT": str(self.port),
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", LOG_LEVEL),
            **env,
        }
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited; see {self.log_path}")
            try:
                if fetch(HOST, self.port, "/readyz", timeout=1)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the server was not ready within 120 s; see {self.log_path}")

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
