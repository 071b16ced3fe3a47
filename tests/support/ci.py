"""What a test does when something it needs is missing: a skip on a developer's machine, a
failure in CI.

CI (``CI=true``, which ``.ci/run`` sets) has to run every test, so there a missing tool, package
or data set is a failure whose message says what to install or set; elsewhere the same message
skips the test. ``needs`` is the one way to say so.

``SkipsFailInCI``, which ``tests/conftest.py`` registers, is the net under it: in CI any other skip (a ``pytest.skip`` or
``importorskip`` added later, a ``skipif``) is reported as a failure too, except one raised
through ``not_applicable``, for a test that cannot apply to the machine it runs on whatever is
installed (a check for machines without a GPU, run on one with a GPU).
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import NoReturn

import pytest

NOT_APPLICABLE = "not applicable here: "


def in_ci() -> bool:
    """Whether this run is CI's (``CI`` set to true, 1 or yes, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def needs(missing: str, fix: str) -> NoReturn:
    """Stop the test for lack of ``missing``; ``fix`` says what to install or set."""
    message = f"{missing}: {fix}"
    if in_ci():
        pytest.fail(f"CI=true, and {message}", pytrace=False)
    pytest.skip(f"{message} (with CI=true this fails)")


def not_applicable(reason: str) -> NoReturn:
    """Skip a test that cannot apply here whatever is installed; CI lets this skip through."""
    pytest.skip(f"{NOT_APPLICABLE}{reason}")


def skip_reason(longrepr: object) -> str:
    """The message of a skipped test's report (``(path, line, "Skipped: message")``)."""
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return str(text).removeprefix("Skipped: ")


class SkipsFailInCI:
    """A pytest plugin: in CI, every skipped test or collector is reported as failed, except
    through :func:`not_applicable` (and expected failures, which pytest files as skips)."""

    @staticmethod
    def _fail_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
        if not (in_ci() and report.skipped) or hasattr(report, "wasxfail"):
            return
        reason = skip_reason(report.longrepr)
        if reason.startswith(NOT_APPLICABLE):
            return
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test has to run: {reason}"

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        self._fail_skip(report)
        return report

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
        report = yield
        self._fail_skip(report)
        return report
