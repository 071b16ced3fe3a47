"""The micro-batcher on a signature's named arrays: which requests share a call, padding to
allowed batch sizes, signatures without a batch dimension, and a bad input among good ones.

As in ``test_batching.py``: a fake model (no TensorFlow) that records each call as it enters
and can be held there; the tests wait for conditions, never for time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest

from app.batching import InputRejectedError, MicroBatcher, ModelInputError
from tests.support.waiting import until

Arrays = dict[str, np.ndarray]


class NamedModel:
    """``{"a", "b"} -> {"sum": a + b, "first": a[:, 0]}``; refuses any ``a`` holding -1, as
    TensorFlow refuses an input it cannot use (InvalidArgument)."""

    def __init__(self) -> None:
        self.calls: list[Arrays] = []
        self._open = threading.Event()
        self._open.set()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def __call__(self, inputs: Arrays) -> Arrays:
        self.calls.append({k: v.copy() for k, v in inputs.items()})
        self._open.wait()
        if (inputs["a"] == -1).any():
            raise ModelInputError("a must not hold -1")
        return {"sum": inputs["a"] + inputs["b"], "first": inputs["a"][:, 0]}

    @property
    def sizes(self) -> list[int]:
        return [len(call["a"]) for call in self.calls]


@asynccontextmanager
async def running(model: NamedModel, **settings: Any) -> AsyncIterator[MicroBatcher]:
    batcher = MicroBatcher("named", model, **settings)
    batcher.start()
    try:
        yield batcher
    finally:
        model.release()
        await batcher.close()


def request(value: float, rows: int = 1, width: int = 2) -> Arrays:
    a = np.full((rows, width), value)
    return {"a": a, "b": np.ones((rows, width))}


async def test_named_arrays_are_concatenated_and_split_back() -> None:
    model = NamedModel()
    model.hold()
    async with running(model, max_batch_size=16) as batcher:
        first = asyncio.create_task(batcher.predict(request(0)))
        await until(lambda: len(model.calls) == 1, "the first call inside the model")
        tasks = [asyncio.create_task(batcher.predict(request(i, rows=2))) for i in range(1, 5)]
        await until(lambda: batcher.queued == 8, lambda: f"8 queued, not {batcher.queued}")
        model.release()
        results = await asyncio.gather(first, *tasks)
    assert model.sizes == [1, 8]
    for i, result in enumerate(results):
        np.testing.assert_array_equal(
            result["sum"], request(i, rows=result["sum"].shape[0])["a"] + 1
        )
        assert set(result) == {"sum", "first"}


async def test_requests_of_other_shapes_wait_for_a_call_of_their_own_kind() -> None:
    model = NamedModel()
    model.hold()
    async with running(model, max_batch_size=16) as batcher:
        first = asyncio.create_task(batcher.predict(request(0)))
        await until(lambda: len(model.calls) == 1, "the first call inside the model")
        narrow = [asyncio.create_task(batcher.predict(request(i))) for i in (1, 2)]
        wide = asyncio.create_task(batcher.predict(request(9, width=3)))
        narrow.append(asyncio.create_task(batcher.predict(request(3))))
        await until(lambda: batcher.queued == 4, lambda: f"4 queued, not {batcher.queued}")
        model.release()
        results = await asyncio.gather(first, *narrow, wide)
    # The three narrow requests went together, though the wide one came before the last.
    assert [call["a"].shape for call in model.calls] == [(1, 2), (3, 2), (1, 3)]
    assert results[-1]["sum"].tolist() == [[10.0, 10.0, 10.0]]
    assert [r["first"].tolist() for r in results[1:4]] == [[1.0], [2.0], [3.0]]
    assert batcher.queued == 0


async def test_batches_are_padded_up_to_an_allowed_size_and_the_padding_dropped() -> None:
    model = NamedModel()
    async with running(model, max_batch_size=8, allowed_batch_sizes=(4, 8)) as batcher:
        result = await batcher.predict(request(5, rows=3))
        big = await batcher.predict(request(6, rows=5))
    assert model.sizes == [4, 8]
    assert result["sum"].shape == (3, 2)
    assert big["first"].tolist() == [6.0] * 5


async def test_an_unbatched_signature_gets_each_request_whole_and_alone() -> None:
    model = NamedModel()
    model.hold()
    async with running(model, max_batch_size=16, batched=False) as batcher:
        tasks = [asyncio.create_task(batcher.predict(request(i, rows=3))) for i in range(3)]
        await until(lambda: len(model.calls) == 1, "the first call inside the model")
        await until(lambda: batcher.queued == 2, lambda: f"2 queued, not {batcher.queued}")
        model.release()
        results = await asyncio.gather(*tasks)
    assert model.sizes == [3, 3, 3]
    assert [r["first"].tolist() for r in results] == [[0.0] * 3, [1.0] * 3, [2.0] * 3]


async def test_a_refused_input_fails_only_the_request_that_sent_it() -> None:
    model = NamedModel()
    model.hold()
    async with running(model, max_batch_size=16) as batcher:
        first = asyncio.create_task(batcher.predict(request(0)))
        await until(lambda: len(model.calls) == 1, "the first call inside the model")
        good = [asyncio.create_task(batcher.predict(request(i))) for i in (1, 2)]
        bad = asyncio.create_task(batcher.predict(request(-1)))
        await until(lambda: batcher.queued == 3, lambda: f"3 queued, not {batcher.queued}")
        model.release()
        await first
        with pytest.raises(InputRejectedError, match="must not hold -1"):
            await bad
        answers = await asyncio.gather(*good)
    assert [a["first"].tolist() for a in answers] == [[1.0], [2.0]]
    # The merged call, then each of its requests alone.
    assert model.sizes == [1, 3, 1, 1, 1]


async def test_inputs_of_different_lengths_are_refused_before_queueing() -> None:
    model = NamedModel()
    async with running(model) as batcher:
        with pytest.raises(InputRejectedError, match="differ"):
            await batcher.predict({"a": np.zeros((2, 2)), "b": np.zeros((3, 2))})
    assert model.calls == []
