"""Compare labelled versions of a running service on the held-out sets: the canary's check.

    python -m evaluation.compare http://localhost:8000 stable canary
    python -m evaluation.compare http://localhost:8000 stable canary --api-key "$KEY"

For each model (sentiment, digits) and each label, it sends the held-out sets that need no data
set (the negation probes; drawn digits and scikit-learn's handwriting at 28x28 and 64x64)
through TensorFlow Serving's label route (``/v1/models/{name}/labels/{label}:predict``), and
prints one table per model: each measure, for each label and the version it names, with the
median time of a request of 64 instances. Nothing here is mocked: it is what a client of that
label gets.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx

from evaluation import sets
from evaluation.measures import digit_measures, png, sentiment_measures
from evaluation.readers import TFServingDigits, TFServingSentiment


def version_of(client: httpx.Client, name: str, label: str) -> str:
    response = client.get(f"/v1/models/{name}/labels/{label}/metadata")
    response.raise_for_status()
    return str(response.json()["model_spec"]["version"])


def request_ms(call: Callable[[], Any], times: int = 15) -> float:
    """Median time of one request, in ms."""
    call()
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        spent.append(time.perf_counter() - started)
    return round(statistics.median(spent) * 1000, 1)


def compare(client: httpx.Client, labels: list[str]) -> None:
    texts, _, _ = sets.negation_probes()
    batch = [*texts, *texts][:64]
    images, _ = sets.drawn(28, per_digit=7)
    files = [png(image) for image in images[:64]]
    for name in ("sentiment", "digits"):
        columns: dict[str, dict[str, float]] = {}
        for label in labels:
            heading = f"{label} (v{version_of(client, name, label)})"
            if name == "sentiment":
                reader = TFServingSentiment(client, label)
                figures = sentiment_measures(reader, imdb=False, snippets=False)
                figures["request_ms_64"] = request_ms(lambda r=reader: r.scores(batch))
            else:
                digits = TFServingDigits(client, label)
                figures = digit_measures(digits, mnist=False)
                figures["request_ms_64"] = request_ms(lambda r=digits: r.uploads(files))
            columns[heading] = figures
        print(f"\n{name}")
        print(f"  {'measure':28s}" + "".join(f"{h:>18s}" for h in columns))
        for measure in next(iter(columns.values())):
            row = "".join(f"{c[measure]:18.4g}" for c in columns.values())
            print(f"  {measure:28s}{row}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m evaluation.compare", description=__doc__)
    parser.add_argument("url", help="the service, e.g. http://localhost:8000")
    parser.add_argument("labels", nargs="+", help="labels to compare, e.g. stable canary")
    parser.add_argument("--api-key", default=None, help="when the service sets API_KEYS")
    args = parser.parse_args(argv)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    with httpx.Client(base_url=args.url, headers=headers, timeout=60) as client:
        compare(client, args.labels)


if __name__ == "__main__":
    main()
