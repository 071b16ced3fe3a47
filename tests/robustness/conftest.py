"""Real uvicorn servers for the robustness tests, each started once per test session.

* ``server``: the service as shipped, with MAX_REQUEST_BYTES lowered to 2 MB so that the
  body-cap tests send little, and a 60 s deadline, so that a burst of huge images decoding
  one per core is answered in full on a slow machine;
* ``busy_server``: a queue of 4 instances per model and a 250 ms batch delay (so bursts overflow it),
  API keys required and /metrics closed;
* ``faulty_server``: ``tests.support.faulty_app`` with a fault file the tests write, a 1 s
  request timeout, and one API key (with /metrics left public).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tests.robustness.helpers import API_KEYS, BUSY_QUEUE, MAX_REQUEST_BYTES, Server
from tests.support.server import start_server, stop_server


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
def busy_server() -> Iterator[Server]:
    proc, url = start_server(
        {
            "MAX_QUEUE_SIZE": str(BUSY_QUEUE),
            "MAX_BATCH_DELAY_MS": "250",
            "API_KEYS": ",".join(API_KEYS),
            "METRICS_PUBLIC": "false",
        }
    )
    yield Server(proc, url)
    stop_server(proc)


@pytest.fixture(scope="session")
def faulty_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    fault_file = tmp_path_factory.mktemp("fault") / "fault"
    fault_file.write_text("")
    proc, url = start_server(
        {
            "FAULT_FILE": str(fault_file),
            "REQUEST_TIMEOUT_S": "1",
            "API_KEYS": API_KEYS[1],
            "MAX_CONCURRENT_BATCHES": "2",  # the hang tests hold both model threads
        },
        target="tests.support.faulty_app:app",
    )
    yield Server(proc, url, fault_file)
    stop_server(proc)
