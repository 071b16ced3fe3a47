"""The models' own throughput: their default signature called directly (``LoadedModel.call``),
no HTTP, no batcher.

Run as its own process (``python -m bench.raw``) so that TensorFlow gets the same thread
settings as the server under test (``TF_INTRA_OP_THREADS``, ``TF_INTER_OP_THREADS``, read by
the service's own settings) and the load generator's process stays free of it. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import numpy as np


def measure(predict, batch: np.ndarray, seconds: float, warmup_calls: int = 10) -> dict:
    for _ in range(warmup_calls):
        predict(batch)
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        predict(batch)
        calls += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed = now - started
    return {
        "batch_size": len(batch),
        "calls": calls,
        "ms_per_call": round(elapsed / calls * 1000, 3),
        "instances_per_s": round(calls * len(batch) / elapsed, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per model and batch size")
    parser.add_argument("--batch-sizes", default="1,64")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)

    from app.config import Settings
    from app.model import Runtime, configure_tensorflow, load_model
    from app.model_config import ModelConfig
    from app.repository import OnceLog, scan
    from bench.payloads import digit_images, reviews

    settings = Settings()
    device = configure_tensorflow(
        settings.device, settings.tf_intra_op_threads, settings.tf_inter_op_threads
    )
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    found = scan(settings.model_dir, OnceLog(logging.getLogger("bench")))
    runtime = Runtime(device, settings.tf_intra_op_threads, settings.tf_inter_op_threads)
    config = ModelConfig(max_batch_size=max(sizes))
    models = {}
    for name in ("digits", "sentiment"):
        version, folder = max(found[name].versions.items())
        models[name] = load_model(name, version, folder.path, runtime, config)
    images, image_source = digit_images(max(sizes), args.data_dir)
    texts, text_source = reviews(max(sizes), args.data_dir)
    inputs = {
        "digits": (images.astype(np.float32), image_source),
        "sentiment": (np.array(texts, dtype=object), text_source),
    }
    results = []
    for name, (data, source) in inputs.items():
        model = models[name]
        signature = model.default_signature
        assert signature is not None
        call = model.caller(signature)
        key = signature.input.key

        def predict(batch: np.ndarray, call=call, key=key) -> object:
            return call({key: batch})

        for size in sizes:
            row = measure(predict, data[:size], args.seconds)
            results.append({"model": name, "device": device, "source": source, **row})
    json.dump(results, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
