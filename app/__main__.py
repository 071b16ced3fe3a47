"""``python -m app``: run uvicorn with the settings from the environment.

``WORKERS=auto`` becomes a number here (``app/workers.py``), logged. Each worker builds the app
with :func:`app.main.tuned_app`, so the process tuning of :mod:`app.tuning` applies to the
server only. With more than one worker it points prometheus-client's multiprocess mode at a
fresh folder first, so that ``/metrics`` adds up every worker's samples. The app's own log
lines go through the logging config uvicorn applies in each worker process too
(``logging.basicConfig`` reaches only this one).
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import tempfile
from typing import Any

import uvicorn
import uvicorn.config

from app.config import get_settings
from app.workers import decide, read_resources

LOG_FORMAT = "%(levelname)s: %(name)s: %(message)s"


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config plus the root logger, in the app's format, at ``level``."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"]["app"] = {"format": LOG_FORMAT}
    config["handlers"]["app"] = {
        "class": "logging.StreamHandler",
        "formatter": "app",
        "stream": "ext://sys.stderr",
    }
    config["root"] = {"handlers": ["app"], "level": level.upper()}
    return config


def main() -> None:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
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
        log_config=log_config(settings.log_level),
        # After SIGTERM: stop accepting, let accepted requests finish, then shut down.
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
    )


if __name__ == "__main__":
    main()
