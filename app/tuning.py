"""Process-wide tuning of a serving process: the garbage collector and the GIL switch interval.

Only the server's entry point applies it (``python -m app``, through
``create_app(tune_process=True)``): it changes the whole interpreter, so importing the app, in
tests or a notebook, leaves both as Python sets them. Why each helps is measured in
``docs/performance.md``:

* ``gc.freeze()`` after TensorFlow is imported and before any model is loaded: TensorFlow and
  Keras leave hundreds of thousands of objects that live as long as the process, and a full
  collection would scan them all again. Models are loaded after the freeze, so that the
  reference cycles of a version unloaded later are still collected.
* ``GC_THRESHOLD``: requests in flight make many young objects; a higher first-generation
  threshold runs the collector less often.
* ``SWITCH_INTERVAL_MS``: under load the event loop holds the GIL nearly all the time, and a
  model thread coming back from TensorFlow waits up to the switch interval for it.
"""

from __future__ import annotations

import gc
import sys

from app.config import Settings


def tune_process(settings: Settings) -> None:
    """Apply ``SWITCH_INTERVAL_MS`` and ``GC_THRESHOLD`` (0 leaves Python's own for either)."""
    if settings.switch_interval_ms > 0:
        sys.setswitchinterval(settings.switch_interval_ms / 1000)
    if settings.gc_threshold > 0:
        gc.collect()
        gc.freeze()
        gc.set_threshold(settings.gc_threshold, 10, 10)
