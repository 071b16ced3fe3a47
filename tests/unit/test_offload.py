"""Decoding off the event loop: at most DECODE_THREADS at once, under the request's deadline.

The deadline is what these tests are about, so they set short ones; everything else waits on
what the fake decoder and the semaphore show.
"""

from __future__ import annotations

import asyncio
import threading

import orjson
import pytest

from app import offload
from app.batching import DeadlineExceededError
from app.codecs import INLINE_PARSE_BYTES
from app.config import Settings
from app.inputs import DECODE_THREADS
from app.model import LoadedModel
from app.offload import DEADLINE, off_loop
from app.protocols.oip import codec as oip_codec
from app.protocols.tfserving import codec as tfs_codec
from tests.conftest import MODELS
from tests.support.waiting import until


class Blocking:
    """A decode that says when it has started and runs until released."""

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            self.started += 1
        self.release.wait(30)
        with self._lock:
            self.finished += 1
        return "decoded"


def free_slots() -> int:
    return offload._slots[asyncio.get_running_loop()]._value


async def with_deadline(seconds: float, decode: Blocking) -> str:
    DEADLINE.set(asyncio.get_running_loop().time() + seconds)
    return await off_loop(decode)


async def test_decodes_run_at_most_one_per_slot_and_queue_for_the_rest() -> None:
    decode = Blocking()
    tasks = [asyncio.create_task(off_loop(decode)) for _ in range(DECODE_THREADS + 2)]
    await until(lambda: decode.started == DECODE_THREADS, "every slot's decode started")
    slots = offload._slots[asyncio.get_running_loop()]
    await until(lambda: len(slots._waiters or ()) == 2, "two decodes waiting for a slot")
    assert decode.started == DECODE_THREADS
    decode.release.set()
    assert await asyncio.gather(*tasks) == ["decoded"] * (DECODE_THREADS + 2)
    await until(lambda: free_slots() == DECODE_THREADS, "every slot free again")


async def test_waiting_for_a_slot_past_the_deadline_is_a_504_and_never_decodes() -> None:
    busy = Blocking()
    holders = [asyncio.create_task(off_loop(busy)) for _ in range(DECODE_THREADS)]
    await until(lambda: busy.started == DECODE_THREADS, "every slot busy")
    late = Blocking()
    with pytest.raises(DeadlineExceededError):
        await asyncio.create_task(with_deadline(0.05, late))
    busy.release.set()
    await asyncio.gather(*holders)
    assert late.started == 0


async def test_a_decode_past_its_deadline_keeps_its_slot_until_it_ends() -> None:
    decode = Blocking()
    with pytest.raises(DeadlineExceededError):
        await asyncio.create_task(with_deadline(0.05, decode))
    assert decode.started == 1
    assert free_slots() == DECODE_THREADS - 1  # its thread still runs: the bound holds
    decode.release.set()
    await until(lambda: free_slots() == DECODE_THREADS, "every slot free again")
    assert decode.finished == 1


# ---- which bodies the protocols parse off the loop ---------------------------------------------


@pytest.fixture(scope="module")
def sentiment() -> LoadedModel:
    return LoadedModel("sentiment", 1, MODELS / "sentiment" / "1", "/CPU:0")


def _parsed_on(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[int]:
    """The threads ``module.name`` runs on, from now on."""
    threads: list[int] = []
    original = getattr(module, name)

    def recorded(*args: object, **kwargs: object) -> object:
        threads.append(threading.get_ident())
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, recorded)
    return threads


@pytest.mark.parametrize("reviews", [1, 2_000])
async def test_oip_and_tf_serving_parse_large_json_bodies_off_the_loop(
    monkeypatch: pytest.MonkeyPatch, sentiment: LoadedModel, reviews: int
) -> None:
    settings = Settings(max_instances=reviews)
    texts = ["A wonderful film with a moving story."] * reviews
    tensor = {"name": "reviews", "datatype": "BYTES", "shape": [reviews], "data": texts}
    oip = orjson.dumps({"inputs": [tensor]})
    tfs = orjson.dumps({"instances": texts})
    large = len(oip) > INLINE_PARSE_BYTES
    assert large == (len(tfs) > INLINE_PARSE_BYTES) == (reviews > 1)
    oip_threads = _parsed_on(monkeypatch, oip_codec, "_parse")
    tfs_threads = _parsed_on(monkeypatch, tfs_codec, "parse_predict_request")
    request = await oip_codec.decode_infer(oip, None, sentiment, settings)
    predict = await tfs_codec.decode_predict(tfs, sentiment, settings)
    assert request.inputs["reviews"].shape == predict.inputs["reviews"].shape == (reviews,)
    loop_thread = threading.get_ident()
    assert [t != loop_thread for t in oip_threads] == [large]
    assert [t != loop_thread for t in tfs_threads] == [large]
