"""``python -m app``: run uvicorn with the settings from the environment.

``WORKERS=auto`` becomes a number here (``app/workers.py``), logged. Each worker builds the app
with :func:`app.main.tuned_app`, so the process tuning of :mod:`app.tuning` applies to the
server only. With more than one worker it points prometheus-client's multiprocess mode at a
fresh folder first, so that ``/metrics`` adds up every worker's samples. Logging
(:mod:`app.logs`, ``LOG_LEVEL`` and ``LOG_FORMAT``) is the config uvicorn applies in each
worker process; with ``LOG_FORMAT=json`` what the processes write outside logging is captured
here too (:func:`app.logs.capture_output`), so that every line is a JSON object.

TensorFlow's C++ code logs notices at INFO: ``TF_CPP_MIN_LOG_LEVEL`` is 1 unless set, before
anything imports TensorFlow, which drops most of them (not the few it writes before its own
logging is set up; with JSON those are captured like any other line).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import logging
import signal
import tempfile

import uvicorn

from app import logs
from app.config import get_settings
from app.workers import decide, read_resources


def main() -> None:
    settings = get_settings()
    with logs.captured_output(settings.log_format == "json"):
        logs.configure(settings.log_level, settings.log_format)
        if isinstance(settings.workers, int):
            workers = settings.workers
        else:  # auto
            decision = decide(read_resources(), settings.device)
            workers = decision.workers
            logging.getLogger("app").info("WORKERS=auto: %d (%s)", workers, decision.reason)
        if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="prometheus-")
        # uvicorn re-raises SIGTERM once it has shut down gracefully, which would make the exit
        # status "killed by SIGTERM"; a no-op handler underneath makes a clean shutdown exit 0.
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
        uvicorn.run(
            "app.main:tuned_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers,
            log_level=settings.log_level,
            log_config=logs.log_config(settings.log_level, settings.log_format),
            access_log=False,  # app.middleware writes the access line (ACCESS_LOG)
            # After SIGTERM: stop accepting, let accepted requests finish, then shut down.
            timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
        )


if __name__ == "__main__":
    main()
