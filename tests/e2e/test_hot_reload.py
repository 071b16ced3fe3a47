"""Model versions that change while a real server is under load: no request may fail.

A real server process polls a temporary MODEL_DIR every half second while clients keep
sending to both models through all three protocols. The test publishes version 2 of sentiment
(copy, then rename), then a broken version 3; rolls back by removing version 2's folder
(version 1, still on disk, is loaded again before 2 leaves); then sets a label that keeps
version 1 while version 4 comes, moves the label to 4, and removes version 1's folder. Every
response must be a 2xx naming the version that served it; a new version must be loading
within two polls of its publish and serving once its own load is over (counted with the
server's own poll counter, not a clock); and the status API must walk through LOADING,
AVAILABLE, UNLOADING and END.

During both swaps sentiment requests are held between picking the old version and queuing on
its batcher (``block-decode`` of ``tests/support/faulty_app.py``): the race that a small body
almost never hits by itself. The old version has to stay UNLOADING until they are let go, and
then answer them.

A second test copies a version in slowly, a file or a part of one after each poll of the
server, and checks it is never loaded while half-written.
"""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import MODELS
from tests.support.predictions import REVIEWS
from tests.support.server import server_log, start_server, stop_server
from tests.support.waiting import wait_until as _wait_until

POLL_S = 0.5
SWAP_WAIT_S = 90  # loading a version on a busy 2-CPU host can take a while
SENTIMENT = MODELS / "sentiment" / "1"
DIGITS = MODELS / "digits" / "1"
CLIENTS = 8
CLIENT_TIMEOUT_S = 2 * SWAP_WAIT_S  # longer than any wait below, so held requests never give up


def wait_until(condition: Callable[[], object], what: str) -> None:
    _wait_until(condition, what, within_s=SWAP_WAIT_S)


def publish(model_dir: Path, name: str, version: int, source: Path = SENTIMENT) -> None:
    """The documented way to publish: copy beside the target, then rename (atomic)."""
    staging = model_dir / name / f".{version}.partial"
    shutil.copytree(source, staging)
    staging.rename(model_dir / name / str(version))


def publish_broken(model_dir: Path, name: str, version: int) -> None:
    staging = model_dir / name / f".{version}.partial"
    staging.mkdir()
    (staging / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    staging.rename(model_dir / name / str(version))


@dataclass
class Response:
    started: float
    what: str
    status: int
    version: int | None


@dataclass
class Load:
    """Clients sending to both models through the three protocols until stopped."""

    url: str
    labels: bool = False  # also ask TF Serving's label route for "stable"
    responses: list[Response] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    sending: dict[int, float] = field(default_factory=dict)  # client: its request's start

    def answered_all_sent_before(self, moment: float) -> bool:
        return all(started > moment for started in list(self.sending.values()))

    def requests(self) -> list[tuple[str, Callable[[httpx.AsyncClient], object]]]:
        pixels = np.zeros((28, 28), dtype=np.float32)
        pixels[8:20, 13:15] = 255
        tensor = {"name": "reviews", "datatype": "BYTES", "shape": [1], "data": REVIEWS[:1]}
        image = {"name": "images", "datatype": "FP32", "shape": [1, 28, 28], "data": pixels.ravel().tolist()}  # fmt: skip
        requests = [
            ("native sentiment", lambda c: c.post("/v1/sentiment/predict", json={"reviews": REVIEWS[:1]})),
            ("native digits", lambda c: c.post("/v1/digits/predict", files={"file": ("d.png", _png(pixels), "image/png")})),
            ("tfs sentiment", lambda c: c.post("/v1/models/sentiment:predict", json={"instances": REVIEWS[:1]})),
            ("tfs digits", lambda c: c.post("/v1/models/digits:predict", json={"instances": [pixels.tolist()]})),
            ("oip sentiment", lambda c: c.post("/v2/models/sentiment/infer", json={"inputs": [tensor]})),
            ("oip digits", lambda c: c.post("/v2/models/digits/infer", json={"inputs": [image]})),
        ]  # fmt: skip
        return requests

    async def _client(self, index: int) -> None:
        requests = self.requests()
        label = ("tfs label", lambda c: c.post("/v1/models/sentiment/labels/stable:predict", json={"instances": REVIEWS[:1]}))  # fmt: skip
        async with httpx.AsyncClient(base_url=self.url, timeout=CLIENT_TIMEOUT_S) as client:
            turn = index
            while not self.stop.is_set():
                what, send = (
                    label if self.labels and turn % 3 == 0 else requests[turn % len(requests)]
                )
                turn += 1
                started = self.sending[index] = time.monotonic()
                try:
                    response = await send(client)  # type: ignore[misc]
                except httpx.HTTPError as exc:
                    self.errors.append(f"{what}: {exc!r}")
                    continue
                finally:
                    del self.sending[index]
                self.responses.append(
                    Response(started, what, response.status_code, _version(response))
                )
                if response.status_code >= 300:
                    self.errors.append(f"{what}: {response.status_code} {response.text[:200]}")

    def run(self) -> None:
        async def clients() -> None:
            await asyncio.gather(*(self._client(i) for i in range(CLIENTS)))

        asyncio.run(clients())


def _png(pixels: np.ndarray) -> bytes:
    from tests.support.predictions import png

    return png(pixels)


def _version(response: httpx.Response) -> int | None:
    if "x-model-version" in response.headers:
        return int(response.headers["x-model-version"])
    if response.status_code != 200:
        return None
    body = response.json()
    return int(body.get("version", body.get("model_version", 0)))


def held(fault_file: Path, version: int) -> int:
    """Sentiment requests held so far between picking ``version`` and queuing (the fault
    ``block-decode:sentiment`` records each one as it starts waiting)."""
    path = fault_file.with_name(fault_file.name + ".decodes")
    lines = path.read_text().splitlines() if path.exists() else []
    return lines.count(f"sentiment {version}")


def let_go(fault_file: Path, load: Load) -> None:
    """End the fault, and wait until every request sent before has its answer."""
    fault_file.write_text("")
    released = time.monotonic()
    wait_until(lambda: load.answered_all_sent_before(released), "the held requests answered")


def state_now(url: str, version: int) -> str | None:
    status = httpx.get(f"{url}/v1/models/sentiment", timeout=10).json()["model_version_status"]
    return {int(s["version"]): s["state"] for s in status}.get(version)


@dataclass
class Sample:
    at: float
    polls: int
    states: dict[int, str]  # sentiment's versions, from /v1/models/sentiment


class Observer:
    """Samples the poll counter and sentiment's version states, as fast as the server answers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[Sample] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                self.samples.append(sample(client))

    def walk(self, version: int) -> list[str]:
        """The states a version went through, as sampled, repeats folded."""
        walk: list[str] = []
        for s in self.samples:
            state = s.states.get(version)
            if state and (not walk or walk[-1] != state):
                walk.append(state)
        return walk


def load_seconds(url: str) -> float:
    """The time sentiment's loads took so far, warm-up included (the server's histogram)."""
    metrics = httpx.get(f"{url}/metrics").text
    found = re.search(r'^model_load_duration_seconds_sum\{model="sentiment"\} (\S+)', metrics, re.M)
    return float(found[1]) if found else 0.0


def sample(client: httpx.Client) -> Sample:
    at = time.monotonic()
    metrics = client.get("/metrics").text
    polls = int(float(re.search(r"^model_dir_polls_total (\S+)", metrics, re.M)[1]))
    status = client.get("/v1/models/sentiment").json()["model_version_status"]
    return Sample(at, polls, {int(s["version"]): s["state"] for s in status})


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    (root / "sentiment").mkdir(parents=True)
    (root / "digits").mkdir()
    publish(root, "sentiment", 1)
    publish(root, "digits", 1, DIGITS)
    return root


@pytest.fixture
def served(model_dir: Path, tmp_path: Path) -> Iterator[tuple[str, object, Path]]:
    fault_file = tmp_path / "fault"
    fault_file.write_text("")
    proc, url = start_server(
        {
            "MODEL_DIR": str(model_dir),
            "MODEL_POLL_S": str(POLL_S),
            "MODEL_LOAD_RETRIES": "1",
            "FAULT_FILE": str(fault_file),
            # Held calls wait for a version's whole load: no deadline may end them first.
            "REQUEST_TIMEOUT_S": str(CLIENT_TIMEOUT_S),
        },
        target="tests.support.faulty_app:app",
    )
    yield url, proc, fault_file
    stop_server(proc)


@pytest.mark.timeout(900)  # four swaps, each of which may wait SWAP_WAIT_S for a load
def test_versions_change_under_load_and_no_request_fails(
    served: tuple[str, object, Path], model_dir: Path
) -> None:
    url, proc, fault_file = served
    load = Load(url)
    observer = Observer(url)
    clients = threading.Thread(target=load.run, daemon=True)
    clients.start()
    observer.thread.start()
    try:
        wait_until(lambda: len(load.responses) >= 50, "the clients to get going")

        # 1. Version 2. Sentiment requests are held after they picked version 1 (and took its
        # lease), before they reach its batcher, while version 2 replaces it: version 1 stays
        # UNLOADING until they are let go, and then answers them.
        fault_file.write_text("block-decode:sentiment")
        wait_until(lambda: held(fault_file, 1) > 0, "a request held on version 1")
        loaded_before = load_seconds(url)
        with httpx.Client(base_url=url) as client:
            polls_at_publish = sample(client).polls  # read first: the bound can only be loose
        publish(model_dir, "sentiment", 2)
        wait_until(lambda: observer.walk(1)[-1:] in (["UNLOADING"], ["END"]), "1 withdrawn")
        assert state_now(url, 1) == "UNLOADING", (
            f"version 1 ended while {held(fault_file, 1)} requests held it"
        )
        let_go(fault_file, load)
        assert not load.errors, load.errors[:10]  # nothing failed during the swap
        wait_until(lambda: observer.walk(1)[-1:] == ["END"], "version 1 to be unloaded")
        loading = next(s for s in observer.samples if s.states.get(2) in ("LOADING", "AVAILABLE"))
        assert loading.polls <= polls_at_publish + 2, "not picked up within two polls"
        available = next(s for s in observer.samples if s.states.get(2) == "AVAILABLE")
        load_polls = math.ceil((load_seconds(url) - loaded_before) / POLL_S)
        # Serving within two polls of the publish, plus the polls its own load lasted (and one
        # for the sampling): nothing waits but the stand-still check and the load.
        assert available.polls <= polls_at_publish + 2 + load_polls + 1, (
            f"serving {available.polls - polls_at_publish} polls after the publish; "
            f"its load took {load_polls}"
        )
        switched = available.at
        assert observer.walk(2) == ["LOADING", "AVAILABLE"]
        assert observer.walk(1) == ["AVAILABLE", "UNLOADING", "END"]

        # 2. A broken version 3: END with its error; version 2 keeps serving.
        publish_broken(model_dir, "sentiment", 3)
        wait_until(lambda: observer.samples[-1].states.get(3) == "END", "version 3 to fail")
        status = httpx.get(f"{url}/v1/models/sentiment/versions/3").json()
        (three,) = status["model_version_status"]
        assert three["status"]["error_code"] != "OK"
        assert "is not a SavedModel" in three["status"]["error_message"]
        failed_at = observer.samples[-1].polls
        wait_until(lambda: observer.samples[-1].polls >= failed_at + 3, "three more polls")
        assert server_log(proc).count("cannot be loaded") == 1  # logged once, not every poll
        metrics = httpx.get(f"{url}/metrics").text
        assert 'model_load_failures_total{model="sentiment"} 1.0' in metrics
        # One attempt: a file that is not a SavedModel will not become one by retrying
        # (MODEL_LOAD_RETRIES=1 is for failures that may pass); none at the polls since.
        assert 'model_loads_total{model="sentiment",outcome="error"} 1.0' in metrics

        # 3. Roll back: version 2's folder goes while it serves. Version 1's folder is still
        # there (3 is broken), so 1 is loaded again, and only then is 2 unloaded; requests held
        # between picking version 2 and queuing keep it UNLOADING until let go, as in step 1.
        held_before = held(fault_file, 2)
        fault_file.write_text("block-decode:sentiment")
        wait_until(lambda: held(fault_file, 2) > held_before, "a request held on version 2")
        rolled_back_at = time.monotonic()
        shutil.rmtree(model_dir / "sentiment" / "2")
        wait_until(lambda: observer.walk(2)[-1:] in (["UNLOADING"], ["END"]), "2 withdrawn")
        assert state_now(url, 2) == "UNLOADING", (
            f"version 2 ended while {held(fault_file, 2) - held_before} requests held it"
        )
        let_go(fault_file, load)
        assert not load.errors, load.errors[:10]
        wait_until(lambda: observer.walk(2)[-1:] == ["END"], "version 2 to be unloaded")
        assert observer.walk(2) == ["LOADING", "AVAILABLE", "UNLOADING", "END"]
        assert observer.walk(1)[-2:] == ["LOADING", "AVAILABLE"]
        back = next(
            s.at
            for s in observer.samples
            if s.at > rolled_back_at and s.states.get(1) == "AVAILABLE"
        )

        # 4. Labels: "stable" keeps version 1 loaded while version 4 comes, then moves to 4;
        # then version 1's folder goes too.
        (model_dir / "sentiment" / "labels.json").write_text('{"stable": 1}')
        wait_until(lambda: _label(url, "stable") == 1, "the stable label")
        load.labels = True
        publish(model_dir, "sentiment", 4)
        wait_until(lambda: observer.samples[-1].states.get(4) == "AVAILABLE", "version 4")
        assert observer.samples[-1].states[1] == "AVAILABLE"  # the label keeps it
        assert _label(url, "stable") == 1
        (model_dir / "sentiment" / "labels.json").write_text('{"stable": 4}')
        wait_until(lambda: observer.walk(1)[-1:] == ["END"], "version 1 to be unloaded")
        assert _label(url, "stable") == 4
        shutil.rmtree(model_dir / "sentiment" / "1")
        responses_before_stop = len(load.responses)
        wait_until(lambda: len(load.responses) >= responses_before_stop + 50, "more answers")
        assert observer.samples[-1].states[4] == "AVAILABLE"
    finally:
        fault_file.write_text("")  # held requests go on, so that the clients can stop
        load.stop.set()
        observer.stop.set()
        clients.join(60)
        observer.thread.join(60)

    assert not load.errors, load.errors[:10]
    sentiment = [r for r in load.responses if "sentiment" in r.what and "label" not in r.what]
    digits = [r for r in load.responses if "digits" in r.what]
    assert {r.version for r in digits} == {1}
    assert {"oip digits", "oip sentiment"} <= {r.what for r in load.responses}
    assert {r.version for r in sentiment} == {1, 2, 4}
    # Once a version was seen serving, no unversioned request that started later got the
    # one it replaced: 2 after the publish, 1 again after the roll-back.
    assert all(r.version != 1 for r in sentiment if switched < r.started < rolled_back_at)
    assert all(r.version != 2 for r in sentiment if r.started > back)
    labelled = [r for r in load.responses if "label" in r.what]
    assert labelled
    assert {r.version for r in labelled} <= {1, 4}
    print(
        f"\n{len(load.responses)} answers, 0 errors; version 2 loading "
        f"{loading.polls - polls_at_publish} poll(s) after the publish and serving "
        f"{available.polls - polls_at_publish} poll(s) after it (its load: {load_polls}); "
        f"{len(observer.samples)} status samples"
    )


def _label(url: str, label: str) -> int | None:
    response = httpx.get(f"{url}/v1/models/sentiment/labels/{label}")
    if response.status_code != 200:
        return None
    return int(response.json()["model_version_status"][0]["version"])


def test_a_slowly_copied_version_is_never_loaded_half_written(model_dir: Path) -> None:
    """The copy writes one part right after each poll of the server, so no two polls in a row
    see the folder the same: it never stands still for a poll period until it is whole."""
    proc, url = start_server({"MODEL_DIR": str(model_dir), "MODEL_POLL_S": str(POLL_S)})
    try:
        target = model_dir / "sentiment" / "2"
        parts = []  # (file, bytes to append): the variables in four parts, the rest whole
        for source in sorted(p for p in SENTIMENT.rglob("*") if p.is_file()):
            data = source.read_bytes()
            step = -(-len(data) // (4 if source.name.startswith("variables.data") else 1))
            parts += [(source, data[i : i + step]) for i in range(0, len(data), step)]
        with httpx.Client(base_url=url, timeout=10) as client:

            def after_a_poll(write: Callable[[], object] = lambda: None) -> None:
                """``write``, then wait for the server's next poll to end (it has seen this
                write, or else the one before: no two polls in a row see the same folder)."""
                seen = sample(client).polls
                write()
                wait_until(lambda: sample(client).polls > seen, "the next poll")

            after_a_poll()  # start right after a poll: a whole poll period to the next
            for source, data in parts:
                destination = target / source.relative_to(SENTIMENT)

                def append(destination: Path = destination, data: bytes = data) -> None:
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    with destination.open("ab") as out:
                        out.write(data)

                after_a_poll(append)
                assert 2 not in sample(client).states, f"loaded while half-written ({source})"
            wait_until(lambda: sample(client).states.get(2) == "AVAILABLE", "version 2")
            metrics = client.get("/metrics").text
        assert 'model_loads_total{model="sentiment",outcome="error"}' not in metrics
        assert "load attempt" not in server_log(proc)
    finally:
        stop_server(proc)
