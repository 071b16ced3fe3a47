"""The model lifecycle in process: real SavedModels in a temporary MODEL_DIR, real batchers.

The tests call ``Lifecycle.poll_once()`` themselves (``MODEL_POLL_S=0``: no timer), so every
step is a condition, never a clock: a version is loaded at the second poll that sees its folder
unchanged, and ``Lifecycle.idle()`` waits for the loads and unloads a poll started.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from app.config import Settings
from app.errors import NotFound
from app.lifecycle import Lifecycle
from app.model import ModelLoadError
from app.serving import ModelRef, ModelServer, ModelState, Servable
from tests.conftest import MODELS
from tests.support.waiting import until

# The fixtures' batchers run on the session's event loop: so must the tests.
pytestmark = pytest.mark.asyncio(loop_scope="session")

SENTIMENT = MODELS / "sentiment" / "1"
DIGITS = MODELS / "digits" / "1"
REVIEW = {"reviews": np.array(["A wonderful film."], dtype=object)}


def publish(model_dir: Path, name: str, version: int, source: Path = SENTIMENT) -> Path:
    """Write a version the safe way: into a hidden folder beside it, then rename it into place."""
    staging = model_dir / name / f".{version}.partial"
    shutil.copytree(source, staging)
    target = model_dir / name / str(version)
    staging.rename(target)
    return target


def broken(model_dir: Path, name: str, version: int) -> Path:
    folder = model_dir / name / f".{version}.partial"
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"not a SavedModel")
    target = model_dir / name / str(version)
    folder.rename(target)
    return target


def failed_loads() -> float:
    """Load attempts that failed so far in this process (the service's own counter)."""
    labels = {"model": "sentiment", "outcome": "error"}
    return REGISTRY.get_sample_value("model_loads_total", labels) or 0.0


def states(server: ModelServer, name: str = "sentiment") -> dict[int, str]:
    return {v: s.state.value for v, s in sorted(server.models[name].versions.items())}


def served(server: ModelServer, ref: ModelRef) -> int:
    return server.resolve(ref).model.version


async def poll(lifecycle: Lifecycle, times: int = 1) -> None:
    for _ in range(times):
        await lifecycle.poll_once()
        await lifecycle.idle()


class Lease:
    """A request's hold on a version, as ``ModelServer.predict`` takes one; released once."""

    def __init__(self, servable: Servable) -> None:
        self.servable = servable
        self.held = True
        servable.acquire()

    def release(self) -> None:
        if self.held:
            self.held = False
            self.servable.release()


@contextmanager
def lease(servable: Servable) -> Iterator[Lease]:
    """Hold ``servable`` as a request would; released on the way out if the test has not, so
    that a failed assertion fails the test instead of leaving the teardown's unload waiting
    for the lease forever."""
    held = Lease(servable)
    try:
        yield held
    finally:
        held.release()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    publish(root, "sentiment", 1)
    publish(root, "digits", 1, DIGITS)
    return root


async def started(model_dir: Path, **overrides: object) -> tuple[Lifecycle, ModelServer]:
    values: dict[str, object] = {"model_load_retries": 0, "max_batch_size": 4, **overrides}
    settings = Settings(model_dir=model_dir, model_poll_s=0, **values)  # type: ignore[arg-type]
    server = ModelServer(settings, "/CPU:0")
    lifecycle = Lifecycle(server, settings)
    await lifecycle.load_initial()
    server.accepting = True
    return lifecycle, server


@pytest.fixture
async def running(model_dir: Path) -> AsyncIterator[tuple[Lifecycle, ModelServer]]:
    lifecycle, server = await started(model_dir)
    yield lifecycle, server
    await lifecycle.stop()
    await server.stop()


# ---- swaps -------------------------------------------------------------------------------------


async def test_a_new_version_replaces_the_old_once_loaded(
    running: tuple[Lifecycle, ModelServer], model_dir: Path
) -> None:
    lifecycle, server = running
    # A request that resolved version 1 before the swap and is still running.
    with lease(server.resolve(ModelRef("sentiment"))) as old:
        publish(model_dir, "sentiment", 2)
        await poll(lifecycle)  # first sight: not loaded until it has stood still for a poll
        assert states(server) == {1: "AVAILABLE"}
        await lifecycle.poll_once()
        await until(
            lambda: states(server) == {1: "UNLOADING", 2: "AVAILABLE"},
            lambda: f"version 2 available, 1 unloading: {states(server)}",
        )
        assert served(server, ModelRef("sentiment")) == 2  # new requests get version 2 at once
        # The request holding version 1 still gets its answer from it.
        assert len((await old.servable.batcher.predict(REVIEW))["positive_probability"]) == 1
        old.release()
        await lifecycle.idle()
    assert states(server) == {1: "END", 2: "AVAILABLE"}
    with pytest.raises(NotFound):
        server.resolve(ModelRef("sentiment", 1))


async def test_a_half_written_folder_is_not_loaded(
    running: tuple[Lifecycle, ModelServer], model_dir: Path
) -> None:
    lifecycle, server = running
    target = model_dir / "sentiment" / "2"
    target.mkdir()
    shutil.copy(SENTIMENT / "saved_model.pb", target)
    await poll(lifecycle)
    shutil.copytree(SENTIMENT / "variables", target / "variables")  # the copy goes on
    await poll(lifecycle)
    assert 2 not in server.models["sentiment"].versions  # never tried: it changed since
    await poll(lifecycle)  # still for a whole poll: now it is loaded
    assert states(server) == {1: "END", 2: "AVAILABLE"}


async def test_a_broken_version_ends_with_its_error_and_the_old_one_serves(
    running: tuple[Lifecycle, ModelServer], model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lifecycle, server = running
    attempts_before = failed_loads()
    target = broken(model_dir, "sentiment", 2)
    with caplog.at_level(logging.ERROR, logger="app.lifecycle"):
        await poll(lifecycle, 5)
    assert failed_loads() - attempts_before == 1  # MODEL_LOAD_RETRIES=0: one try, not one a poll
    status = server.models["sentiment"].versions[2]
    assert status.state is ModelState.END
    assert "is not a SavedModel" in status.error
    assert served(server, ModelRef("sentiment")) == 1
    given_up = [r for r in caplog.records if "cannot be loaded" in r.getMessage()]
    assert len(given_up) == 1  # logged once, not at every poll
    # Broken again, differently: tried again once it stands still, and that failure is logged.
    (target / "saved_model.pb").write_bytes(b"still not a SavedModel, but another file")
    with caplog.at_level(logging.ERROR, logger="app.lifecycle"):
        await poll(lifecycle, 3)
    given_up = [r for r in caplog.records if "cannot be loaded" in r.getMessage()]
    assert failed_loads() - attempts_before == 2
    assert len(given_up) == 2
    # Fixed in place: its folder changed, so it is tried again once it stands still.
    shutil.rmtree(target)
    publish(model_dir, "sentiment", 2)
    await poll(lifecycle, 2)
    assert states(server) == {1: "END", 2: "AVAILABLE"}


async def test_a_removed_version_is_unloaded_but_never_the_last_while_another_comes(
    model_dir: Path,
) -> None:
    publish(model_dir, "sentiment", 2)
    lifecycle, server = await started(model_dir, model_version_policy="all")
    try:
        assert states(server) == {1: "AVAILABLE", 2: "AVAILABLE"}
        shutil.rmtree(model_dir / "sentiment" / "1")
        await poll(lifecycle)
        assert states(server) == {1: "END", 2: "AVAILABLE"}
        # The last version's folder goes while version 3 is still being copied: 2 stays.
        (model_dir / "sentiment" / "3").mkdir()
        shutil.rmtree(model_dir / "sentiment" / "2")
        await poll(lifecycle)
        assert served(server, ModelRef("sentiment")) == 2
    finally:
        await lifecycle.stop()
        await server.stop()


async def test_a_removed_version_the_policy_no_longer_serves_is_unloaded(
    model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """specific:1 and version 1's folder goes: version 2 on disk is no replacement (the policy
    does not want it), so 1 is unloaded, as TF Serving does; the model is then unavailable."""
    publish(model_dir, "sentiment", 2)
    lifecycle, server = await started(model_dir, model_version_policy="specific:1")
    try:
        assert states(server) == {1: "AVAILABLE"}
        shutil.rmtree(model_dir / "sentiment" / "1")
        with caplog.at_level(logging.WARNING, logger="app.lifecycle"):
            await poll(lifecycle, 2)
        assert states(server) == {1: "END"}
        assert not [r for r in caplog.records if "its folder is gone" in r.getMessage()]
    finally:
        await lifecycle.stop()
        await server.stop()


async def test_a_version_kept_without_its_folder_is_logged_once(
    running: tuple[Lifecycle, ModelServer], model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lifecycle, server = running
    (model_dir / "sentiment" / "2").mkdir()  # still being copied
    shutil.rmtree(model_dir / "sentiment" / "1")
    with caplog.at_level(logging.WARNING, logger="app.lifecycle"):
        await poll(lifecycle, 3)
    assert served(server, ModelRef("sentiment")) == 1
    gone = [r.getMessage() for r in caplog.records if "its folder is gone" in r.getMessage()]
    assert gone == [
        "model sentiment version 1: its folder is gone; it serves until version 2 loads"
    ]


async def test_a_version_changed_while_loading_leaves_no_state_behind(
    running: tuple[Lifecycle, ModelServer], model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load is thrown away: the status API forgets the version, and so does the metric."""
    lifecycle, server = running
    target = publish(model_dir, "sentiment", 2)
    load = lifecycle._load_model

    def load_while_written_to(folder, name):  # type: ignore[no-untyped-def]
        (target / "late-file").write_text("the copy was not over")
        return load(folder, name)

    monkeypatch.setattr(lifecycle, "_load_model", load_while_written_to)
    await poll(lifecycle, 2)
    assert states(server) == {1: "AVAILABLE"}
    for state in ("LOADING", "AVAILABLE", "UNLOADING", "END"):
        labels = {"model": "sentiment", "version": "2", "state": state}
        assert REGISTRY.get_sample_value("model_version_state", labels) == 0.0, state


async def test_a_version_only_a_label_keeps_answers_only_those_who_ask_for_it(
    model_dir: Path,
) -> None:
    """specific:1 with {"stable": 2}: version 2 loads for its label, and unversioned requests
    stay on 1, the version the policy picks: the pinned model is one setting away."""
    publish(model_dir, "sentiment", 2)
    (model_dir / "sentiment" / "labels.json").write_text('{"stable": 2}')
    lifecycle, server = await started(model_dir, model_version_policy="specific:1")
    try:
        assert states(server) == {1: "AVAILABLE", 2: "AVAILABLE"}
        assert served(server, ModelRef("sentiment")) == 1
        assert served(server, ModelRef("sentiment", label="stable")) == 2
        assert served(server, ModelRef("sentiment", version=2)) == 2
    finally:
        await lifecycle.stop()
        await server.stop()


async def test_labels_follow_their_file_and_point_only_at_available_versions(
    running: tuple[Lifecycle, ModelServer], model_dir: Path
) -> None:
    lifecycle, server = running
    labels = model_dir / "sentiment" / "labels.json"
    labels.write_text('{"stable": 1, "canary": 2}')
    publish(model_dir, "sentiment", 2)
    await poll(lifecycle)
    assert served(server, ModelRef("sentiment", label="stable")) == 1
    with pytest.raises(NotFound):  # version 2 is not available yet: no canary
        server.resolve(ModelRef("sentiment", label="canary"))
    await poll(lifecycle)
    # Version 2 is the latest; version 1 stays loaded because a label names it.
    assert states(server) == {1: "AVAILABLE", 2: "AVAILABLE"}
    assert served(server, ModelRef("sentiment", label="canary")) == 2
    assert served(server, ModelRef("sentiment")) == 2
    labels.write_text('{"stable": 2}')
    await poll(lifecycle)
    assert served(server, ModelRef("sentiment", label="stable")) == 2
    assert states(server) == {1: "END", 2: "AVAILABLE"}  # no label keeps 1 any more
    labels.write_text('{"stable": ')  # a bad edit leaves the labels as they were
    await poll(lifecycle)
    assert served(server, ModelRef("sentiment", label="stable")) == 2


# ---- failures that cannot pass, and start-up -----------------------------------------------


async def test_a_folder_that_can_never_load_is_not_retried(model_dir: Path) -> None:
    lifecycle, server = await started(model_dir, model_load_retries=3)
    try:
        attempts_before = failed_loads()
        broken(model_dir, "sentiment", 2)
        await poll(lifecycle, 2)  # seen, then still: one load, which fails for good
        assert states(server) == {1: "AVAILABLE", 2: "END"}
        assert failed_loads() - attempts_before == 1  # not 1 + MODEL_LOAD_RETRIES
    finally:
        await lifecycle.stop()
        await server.stop()


async def test_a_bad_config_file_ends_the_version_naming_the_file(model_dir: Path) -> None:
    lifecycle, server = await started(model_dir)
    try:
        (model_dir / "sentiment" / "config.toml").write_text("max_batch_size = 0\n")
        publish(model_dir, "sentiment", 2)
        await poll(lifecycle, 2)
        status = server.models["sentiment"].versions[2]
        assert status.state is ModelState.END
        assert "config.toml" in status.error
        assert "max_batch_size" in status.error
        assert served(server, ModelRef("sentiment")) == 1
    finally:
        await lifecycle.stop()
        await server.stop()


async def test_only_a_users_model_is_served_without_the_showcase_models(tmp_path: Path) -> None:
    root = tmp_path / "models"
    publish(root, "mine", 3)
    lifecycle, server = await started(root)
    try:
        assert set(server.models) == {"mine"}
        assert server.ready
        with pytest.raises(NotFound, match="'sentiment' is not served"):
            server.resolve(ModelRef("sentiment"))
    finally:
        await lifecycle.stop()
        await server.stop()


async def test_required_models_must_be_there(model_dir: Path) -> None:
    shutil.rmtree(model_dir / "digits")
    with pytest.raises(ModelLoadError, match="lacks REQUIRED_MODELS digits"):
        await started(model_dir, required_models="sentiment,digits")


async def test_without_exit_on_load_error_a_broken_model_is_end_and_the_rest_serves(
    model_dir: Path,
) -> None:
    broken(model_dir, "other", 1)
    with pytest.raises(ModelLoadError, match="is not a SavedModel"):
        await started(model_dir)
    lifecycle, server = await started(model_dir, exit_on_load_error=False)
    try:
        assert states(server, "other") == {1: "END"}
        assert server.ready
        assert served(server, ModelRef("sentiment")) == 1
    finally:
        await lifecycle.stop()
        await server.stop()
    with pytest.raises(ModelLoadError, match="is not a SavedModel"):
        await started(model_dir, exit_on_load_error=False, required_models="other")


async def test_a_savedmodel_without_a_version_folder_says_where_to_move_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "models"
    shutil.copytree(SENTIMENT, root / "mine")
    with (
        caplog.at_level(logging.WARNING, logger="app.lifecycle"),
        pytest.raises(ModelLoadError, match="holds no model to serve"),
    ):
        await started(root)
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "move it into" in m] == [
        f"{root / 'mine'} holds a SavedModel itself, not in a version folder: move it into "
        f"{root / 'mine'}/1/ (the layout is <name>/<version>/saved_model.pb)"
    ]
    assert not [m for m in messages if "version folder's name" in m]
