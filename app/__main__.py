"""``python -m app``: run uvicorn with the settings from the environment.

``WORKERS=auto`` becomes a number here (``app/workers.py``), logged. With more than one worker
it points prometheus-client's multiprocess mode at a fresh folder first, so that ``/metrics``
adds up every worker's samples.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile

import uvicorn

from app.config import get_settings
from app.workers import decide, read_resources


def main() -> None:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s: %(name)s: %(message)s"
    )
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
        "app.main:app",
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=settings.log_level,
        # After SIGTERM: stop accepting, let accepted requests finish, then shut down.
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
    )


if __name__ == "__main__":
    main()
