"""Benchmarks of the inference service: ``make bench`` or ``python -m bench``.

* :mod:`bench.payloads`: request bodies built from MNIST / IMDB test data (or generated).
* :mod:`bench.loadgen`: a closed-loop HTTP/1.1 load generator on raw keep-alive connections.
* :mod:`bench.raw`: the models' own throughput, called in-process without HTTP.
* :mod:`bench.run`: the whole matrix (batched vs unbatched, concurrency 1/16/64), the table,
  ``bench/results.json`` and ``bench/throughput_latency.png``.
* :mod:`bench.footprint`: a pod's needs (start-up, memory per worker, CPU per request):
  ``bench/footprint.json``, which the Kubernetes manifests are sized and checked against.
* :mod:`bench.capacity`: pods and cores for a request rate and p99 target, from
  ``bench/results.json``; regenerates the table in ``docs/kubernetes.md``.
"""
