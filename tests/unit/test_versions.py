"""The pieces of the model lifecycle that need no model: the plan, policies, labels, scans."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from app.lifecycle import plan_versions
from app.repository import OnceLog, VersionPolicy, parse_labels, scan
from app.serving import ModelState

# ---- the plan --------------------------------------------------------------------------------

A, L, U, E = ModelState.AVAILABLE, ModelState.LOADING, ModelState.UNLOADING, ModelState.END


@pytest.mark.parametrize(
    ("aspired", "known", "pending", "load", "unload"),
    [
        ({2}, {1: A}, True, [2], []),  # load the new one first, keep the old meanwhile
        ({2}, {1: A, 2: L}, True, [], []),  # still loading: keep the old
        ({2}, {1: A, 2: A}, True, [], [1]),  # replaced: unload the old
        ({2, 1}, {1: A, 2: A}, True, [], []),  # latest:2 or a label keeps both
        (set(), {1: A}, True, [], []),  # the new one failed or is still being written
        (set(), {1: A}, False, [], [1]),  # nothing the policy wants is on disk: unload
        ({3, 2}, {1: A, 2: A}, True, [3], []),  # two at once: nothing leaves before 3 settles
        ({1}, {1: U, 2: A}, True, [1], []),  # rollback while 1 drains: reload it
        ({2}, {1: A, 2: E}, True, [2], []),  # ended (unloaded earlier) and aspired again
    ],
)
def test_plan_preserves_availability(
    aspired: set[int],
    known: dict[int, ModelState],
    pending: bool,
    load: list[int],
    unload: list[int],
) -> None:
    plan = plan_versions(aspired, known, pending)
    assert (plan.load, plan.unload) == (load, unload)


@pytest.mark.parametrize(
    ("text", "versions", "selected"),
    [
        ("latest", [1, 3, 2], {3}),
        ("latest:2", [1, 3, 2], {3, 2}),
        ("all", [1, 3], {1, 3}),
        ("specific:1,5", [1, 3], {1}),
    ],
)
def test_version_policies(text: str, versions: list[int], selected: set[int]) -> None:
    policy = VersionPolicy.parse(text)
    assert policy.select(versions) == selected
    assert str(policy) == text


@pytest.mark.parametrize("text", ["newest", "latest:0", "latest:x", "specific:", "specific:1,a"])
def test_bad_version_policies_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a version policy"):
        VersionPolicy.parse(text)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[1]", "expected an object"),
        ('{"1st": 1}', "is not a label"),
        ('{"stable": "1"}', "must name a version"),
        ('{"stable": true}', "must name a version"),
        ("{", "not valid JSON"),
    ],
)
def test_bad_labels_files_are_refused(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_labels(text)
    assert parse_labels('{"stable": 1, "canary": 2}') == {"stable": 1, "canary": 2}


def test_only_ascii_version_numbers_are_versions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("1", "\u0661", "01", "2.partial", ".3.partial", "v4"):
        (tmp_path / "m" / name).mkdir(parents=True)
    once = OnceLog(logging.getLogger("test"))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # the poller's rescans log each problem once
            found = scan(tmp_path, once)
    assert sorted(found["m"].versions) == [1]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 4, warned  # the Arabic-Indic one, 01 (version 1 again), 2.partial, v4
    assert any("\u0661" in message for message in warned)
    assert not any(".3.partial" in message for message in warned)  # hidden: a version in writing
