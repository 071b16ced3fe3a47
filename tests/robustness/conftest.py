"""Real uvicorn servers for the robustness tests, each started once per test session.

* ``server``: the service as shipped, with MAX_REQUEST_BYTES lowered to 2 MB so that the
  body-cap tests send little, and a 60 s deadline, so that a burst of huge images decoding
  one per core is answered in full on a slow machine;
* ``zoo_server``: the same settings on the models users bring (``tests/support/savedmodels.py``'s
  zoo, built for the session): every signature shape, dtype and TF1 export;
* ``busy_server``: a queue of 4 instances per model and a 250 ms batch delay (so bursts overflow it),
  API keys required and /metrics closed; ``tests.support.faulty_app`` with a fault file (empty
  but while a test holds the model to keep the queue full);
* ``faulty_server``: ``tests.support.faulty_app`` with a fault file the tests write, a 3 s
  request timeout, and one API key (with /metrics left public); tests take it through
  ``faulty``, which clears the fault before and after.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tests.robustness.helpers import (
    API_KEYS,
    BUSY_QUEUE,
    FAULTY_TIMEOUT_S,
    MAX_REQUEST_BYTES,
    Server,
    answers,
)
from tests.support.savedmodels import build_zoo
from tests.support.server import start_server, stop_server
from tests.support.waiting import wait_until


@pytest.fixture(scope="session", autouse=True)
def _no_long_gc_pauses() -> Iterator[None]:
    """This process holds TensorFlow's millions of objects: a full garbage collection takes half
    a second, which the latency checks would blame on the server. Freeze what is there now."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    proc, url = start_server(
        {"MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES), "REQUEST_TIMEOUT_S": "60"}
    )
    yield Server(proc, url)
    stop_server(proc)


@pytest.fixture(scope="session")
def zoo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    zoo = build_zoo(tmp_path_factory.mktemp("zoo") / "models")
    proc, url = start_server(
        {
            "MODEL_DIR": str(zoo),
            "MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
            "REQUEST_TIMEOUT_S": "60",
        }
    )
    yield Server(proc, url)
    stop_server(proc)


@pytest.fixture(scope="session")
def busy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    fault_file = tmp_path_factory.mktemp("busy-fault") / "fault"
    fault_file.write_text("")
    proc, url = start_server(
        {
            "MAX_QUEUE_SIZE": str(BUSY_QUEUE),
            "MAX_BATCH_DELAY_MS": "250",
            "MAX_CONCURRENT_BATCHES": "1",  # a held call holds the model: the queue fills
            "API_KEYS": ",".join(API_KEYS),
            "METRICS_PUBLIC": "false",
            "FAULT_FILE": str(fault_file),
        },
        target="tests.support.faulty_app:app",
    )
    yield Server(proc, url, fault_file)
    stop_server(proc)


@pytest.fixture(scope="session")
def faulty_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    fault_file = tmp_path_factory.mktemp("fault") / "fault"
    fault_file.write_text("")
    proc, url = start_server(
        {
            "FAULT_FILE": str(fault_file),
            # Long enough that a client's disconnect is noticed well before its deadline on a
            # loaded machine (the disconnect tests tell the two apart), short for the 504 tests.
            "REQUEST_TIMEOUT_S": f"{FAULTY_TIMEOUT_S:g}",
            "API_KEYS": API_KEYS[1],
            "MAX_CONCURRENT_BATCHES": "2",  # the hang tests hold both model threads
        },
        target="tests.support.faulty_app:app",
    )
    yield Server(proc, url, fault_file)
    stop_server(proc)


@pytest.fixture
def faulty(faulty_server: Server) -> Iterator[Server]:
    """``faulty_server`` with no fault and no model calls recorded; afterwards the fault is
    cleared (which lets a held call go) and the test waits until a prediction succeeds."""
    faulty_server.fault("")
    faulty_server.forget_calls()
    yield faulty_server
    faulty_server.fault("")
    wait_until(lambda: answers(faulty_server), "the model answering again after the test")
