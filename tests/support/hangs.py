"""A hang after a failure still ends: the teardown of a failed test gets a deadline too.

pytest-timeout (``timeout`` in pyproject.toml) fails a test that runs too long, its setup and
teardown included, with the stack of every thread. But it stops its timer as soon as a test
fails (its ``pytest_exception_interact`` hook, there for debuggers), so a teardown that then
waits forever (a fixture waiting for a lease the failed test still holds) would hang the run.
``TeardownGuard`` gives every teardown the same deadline: past it, it names the test, prints
every thread's stack (:mod:`faulthandler`) and ends the process with status 1, as
pytest-timeout's ``thread`` method does.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
from collections.abc import Generator

import pytest


class TeardownGuard:
    """A pytest plugin: a teardown that outlasts the test's timeout ends the run, with stacks.

    Registered in ``pytest_configure``, while pytest is not capturing: ``stderr`` is then the
    terminal's (or CI's log), where the stacks have to go, as pytest's own faulthandler does.
    """

    def __init__(self) -> None:
        self.stderr = os.dup(sys.stderr.fileno())

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        os.close(self.stderr)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, None, None]:
        timeout = _timeout_s(item)
        timer = threading.Timer(timeout, self._give_up, (item.nodeid, timeout))
        timer.daemon = True
        if timeout > 0:
            timer.start()
        try:
            return (yield)
        finally:
            timer.cancel()

    def _give_up(self, nodeid: str, timeout: float) -> None:
        os.write(
            self.stderr,
            f"\n\nteardown of {nodeid} still running after {timeout:g} s; "
            "every thread's stack:\n".encode(),
        )
        faulthandler.dump_traceback(file=self.stderr, all_threads=True)
        os._exit(1)


def _timeout_s(item: pytest.Item) -> float:
    """The test's own ``@pytest.mark.timeout(N)``, else ``--timeout``/``timeout`` (0: none)."""
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    if marker is not None and "timeout" in marker.kwargs:
        return float(marker.kwargs["timeout"])
    try:
        value = item.config.getoption("timeout", None) or item.config.getini("timeout")
    except ValueError:  # pytest-timeout not loaded (-p no:timeout): no deadline
        return 0.0
    return float(value or 0)
