"""``python -m app``: run uvicorn with the settings from the environment.

Each worker builds the app with :func:`app.main.tuned_app`, so the process tuning of
:mod:`app.tuning` applies to the server only. With ``WORKERS`` > 1 it points
prometheus-client's multiprocess mode at a fresh folder first, so that ``/metrics`` adds up
every worker's samples.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile

import uvicorn

from app.config import get_settings


def main() -> None:
    settings = get_settings()
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="prometheus-")
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s: %(name)s: %(message)s"
    )
    # uvicorn re-raises SIGTERM once it has shut down gracefully, which would make the exit
    # status "killed by SIGTERM"; a no-op handler underneath makes a clean shutdown exit 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.run(
        "app.main:tuned_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        # After SIGTERM: stop accepting, let accepted requests finish, then shut down.
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
    )


if __name__ == "__main__":
    main()
