"""Model versions that come and go while the service serves: polling, loading, swapping.

Every ``MODEL_POLL_S`` seconds :class:`Lifecycle` rescans ``MODEL_DIR`` (:mod:`app.repository`)
and, for each model, works out which versions to serve (the version policy, plus any version a
label names) and which to load or unload (:func:`plan_versions`). What it guarantees:

* **Off the event loop.** Loading and warming up run on a loader thread of their own, one
  version at a time; the event loop and the running batchers never wait for them.
* **Available only when ready.** A new version serves only once it has loaded and warmed up;
  then it is the highest available, so unversioned requests go to it from the next one on.
* **Availability first, as TF Serving's availability-preserving policy.** A version leaves only
  once every version that is to replace it has finished loading (or failed), and never to
  leave a model without one while a folder for it is still on disk.
* **No lost requests.** Unloading takes the version out of the lookups (``UNLOADING``), waits
  until no request holds it and its batcher has answered everything queued, then closes it
  (``END``).
* **No half-written versions.** A folder is loaded only once its fingerprint (every file's
  path, size and time) has stood still for one poll period, and it is checked again after the
  load: if it changed meanwhile, the load is thrown away and tried again once it is still.
* **Broken versions.** A load that fails for a reason that cannot pass without a new folder
  (not a SavedModel, a signature refused, a graph that does not run, a bad ``config.toml``) is
  ``END`` at once; one that may pass (a read error, memory) is retried ``MODEL_LOAD_RETRIES``
  times with a growing pause first. An ``END`` version shows its error in the status APIs,
  is logged once, counted in ``model_load_failures_total``, and tried again only when its
  folder changes. The versions being served stay.

At start-up :meth:`Lifecycle.load_initial` loads what the policy picks before the service takes
requests. A model listed in ``REQUIRED_MODELS`` that is missing or cannot load stops start-up
with a :class:`~app.model.ModelLoadError` naming the path; so does any other version that
cannot load, unless ``EXIT_ON_LOAD_ERROR=false`` (then it is ``END`` and the rest is served).
An empty or missing ``MODEL_DIR`` always stops start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from app import metrics
from app.config import Settings
from app.model import LoadedModel, ModelLoadError, load_model
from app.model_config import ModelConfigError, read_model_config
from app.repository import ModelDir, OnceLog, VersionDir, fingerprint_of, scan
from app.serving import ModelServer, ModelState, VersionStatus

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_ENDED = 10  # ended versions kept per model for the status API (the most recent)


@dataclass(frozen=True)
class Plan:
    """What to do for one model: versions to load (highest first) and to unload."""

    load: list[int]
    unload: list[int]


def plan_versions(aspired: set[int], states: Mapping[int, ModelState], pending: bool) -> Plan:
    """Loads and unloads that move a model towards its ``aspired`` versions, keeping it served.

    ``states``: the versions the service knows and their states; ``pending``: whether a version
    the policy wants is on disk but not available yet (still being written, or failed to load):
    while one is, the versions being served stay, even those whose folders are gone.
    """
    busy = {v for v, s in states.items() if s in (ModelState.LOADING, ModelState.AVAILABLE)}
    available = {v for v, s in states.items() if s is ModelState.AVAILABLE}
    load = sorted(aspired - busy, reverse=True)
    loading = {v for v, s in states.items() if s is ModelState.LOADING}
    surplus = available - aspired
    if load or (aspired & loading) or not surplus:
        return Plan(load, [])  # unload only once the replacements have settled
    if aspired & available or not pending:
        return Plan([], sorted(surplus))
    return Plan([], [])  # nothing to replace them with yet: keep serving what there is


class _LoaderThread:
    """A daemon thread that runs blocking calls one at a time (a hung load cannot block exit)."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="model-loader", daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((loop, future, fn, args))
        return await future

    def close(self) -> None:
        self._calls.put(None)

    def _run(self) -> None:
        while (call := self._calls.get()) is not None:
            loop, future, fn, args = call
            try:
                result, error = fn(*args), None
            except BaseException as exc:  # handed to the awaiting task, whatever it is
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # its awaiting task was cancelled (shutdown)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Lifecycle:
    """Loads what ``MODEL_DIR`` holds into the :class:`ModelServer`, then keeps it in step."""

    def __init__(self, server: ModelServer, settings: Settings) -> None:
        self.server = server
        self.settings = settings
        self.policy = settings.model_version_policy
        self._once = OnceLog(logger)
        self._found: dict[str, ModelDir] = {}  # the last scan
        self._previous: dict[str, dict[int, tuple[Any, ...]]] = {}  # the scan before it
        self._labels: dict[str, dict[str, int]] = {}  # as the labels files ask
        self._loads: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._unloads: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._loader = _LoaderThread()
        self._poller: asyncio.Task[None] | None = None

    # ---- start-up and shutdown ----------------------------------------------------------------

    async def load_initial(self) -> None:
        """Load every version the policy picks, blocking, before the service takes requests.

        ModelLoadError, naming the path, for a missing or empty ``MODEL_DIR``, a required model
        missing or failing, or (with ``EXIT_ON_LOAD_ERROR``) any version failing. Versions are
        published (their batchers started) only once every one has been tried.
        """
        settings = self.settings
        model_dir = settings.model_dir
        if not model_dir.is_dir():
            raise ModelLoadError(f"model directory {model_dir.resolve()} does not exist")
        found = scan(model_dir, self._once)
        servable = {name: root for name, root in found.items() if root.versions}
        missing = [name for name in settings.required_models if name not in servable]
        if missing:
            raise ModelLoadError(
                f"model directory {model_dir.resolve()} lacks REQUIRED_MODELS "
                f"{', '.join(missing)} (models with a version folder: "
                f"{', '.join(servable) or 'none'})"
            )
        if not servable:
            raise ModelLoadError(
                f"model directory {model_dir.resolve()} holds no model to serve: it needs "
                "<name>/<version>/saved_model.pb"
                + (f" (found {', '.join(found)}, without version folders)" if found else "")
            )
        loaded: list[tuple[LoadedModel, VersionDir]] = []
        for name, model_root in servable.items():
            self._labels[name] = model_root.labels or {}
            aspired = self._aspired(model_root, set(model_root.versions))
            if not aspired:
                error = ModelLoadError(
                    f"{model_root.path.resolve()}: no version matches "
                    f"MODEL_VERSION_POLICY={self.policy} "
                    f"(versions: {', '.join(map(str, sorted(model_root.versions)))})"
                )
                if settings.exit_on_load_error or name in settings.required_models:
                    raise error
                logger.error("%s; model %s is not served", error, name)
                continue
            for version in sorted(aspired):
                folder = model_root.versions[version]
                try:
                    model = self._load_model(folder, name)
                except ModelLoadError as exc:
                    if settings.exit_on_load_error or name in settings.required_models:
                        raise
                    self._give_up(name, folder, str(exc))
                    continue
                loaded.append((model, folder))
                logger.info(
                    "model %s version %d loaded from %s (%s)",
                    name,
                    version,
                    folder.path,
                    model.backend,
                )
        for model, folder in loaded:
            self.server.publish(self.server.servable_for(model), folder.fingerprint)
            metrics.version_state(model.name, model.version, ModelState.AVAILABLE)
        for name in servable:
            self._apply_labels(name)
        self._found = found
        self._previous = self._fingerprints(found)

    def start(self) -> None:
        """Poll ``MODEL_DIR`` every ``MODEL_POLL_S`` seconds from now on (0: never)."""
        if self.settings.model_poll_s > 0:
            self._poller = asyncio.create_task(self._poll_forever(), name="model-poller")

    async def idle(self) -> None:
        """Wait until no load or unload is under way (those they start included)."""
        while self._loads or self._unloads:
            await asyncio.gather(
                *self._loads.values(), *self._unloads.values(), return_exceptions=True
            )

    async def stop(self) -> None:
        """Stop polling and loading; let versions being unloaded finish draining."""
        tasks = [t for t in (self._poller, *self._loads.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._unloads.values(), return_exceptions=True)
        self._loader.close()

    # ---- polling ------------------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.model_poll_s)
            try:
                await self.poll_once()
            except Exception:  # the next poll tries again; serving goes on
                logger.exception("polling %s failed", self.settings.model_dir)

    async def poll_once(self) -> None:
        """Rescan ``MODEL_DIR`` and start the loads and unloads it calls for."""
        model_dir = self.settings.model_dir
        try:
            found = await asyncio.to_thread(scan, model_dir, self._once)
        except OSError as exc:
            self._once.error(
                "model_dir", "cannot read %s (%s); serving what is loaded", model_dir, exc
            )
            return
        self._once.clear("model_dir")
        metrics.POLLS.inc()
        self._previous, self._found = self._fingerprints(self._found), found
        for name, model_root in found.items():
            if model_root.labels is not None:
                self._labels[name] = model_root.labels
        for name in sorted(set(found) | set(self.server.models)):
            self._reconcile(name)

    @staticmethod
    def _fingerprints(found: dict[str, ModelDir]) -> dict[str, dict[int, tuple[Any, ...]]]:
        return {
            name: {v: folder.fingerprint for v, folder in model.versions.items()}
            for name, model in found.items()
        }

    def _aspired(self, model_root: ModelDir, candidates: set[int]) -> set[int]:
        labelled = set(self._labels.get(model_root.name, {}).values())
        return self.policy.select(candidates) | (labelled & candidates)

    def _reconcile(self, name: str) -> None:
        """Start what the model needs now; called after every scan and every load or unload."""
        model_root = self._found.get(name)
        present = model_root.versions if model_root is not None else {}
        entry = self.server.models.get(name)
        known = entry.versions if entry is not None else {}
        previous = self._previous.get(name, {})
        candidates = set()
        for version, folder in present.items():
            status = known.get(version)
            if status is not None and status.state in (ModelState.LOADING, ModelState.AVAILABLE):
                candidates.add(version)  # loaded (or loading) from this folder: keep it
            elif status is not None and status.error and status.fingerprint == folder.fingerprint:
                continue  # failed, and unchanged since: not again
            elif previous.get(version) == folder.fingerprint:
                candidates.add(version)  # still for a whole poll period
        aspired = self._aspired(model_root, candidates) if model_root is not None else set()
        states = {v: status.state for v, status in known.items()}
        wanted = self._aspired(model_root, set(present)) if model_root is not None else set()
        available = {v for v, state in states.items() if state is ModelState.AVAILABLE}
        plan = plan_versions(aspired, states, pending=bool(wanted - available))
        for version in sorted(available - set(present) - set(plan.unload)):
            self._once.warning(
                f"gone:{name}:{version}",
                "model %s version %d: its folder is gone; it serves until version %s loads",
                name,
                version,
                ", ".join(str(v) for v in sorted(wanted - available, reverse=True)),
            )
        for version in plan.load:
            if (name, version) not in self._loads and (name, version) not in self._unloads:
                self._start(self._loads, name, version, self._load(present[version], name))
        for version in plan.unload:
            if (name, version) not in self._unloads:
                self._start(self._unloads, name, version, self._unload(name, version))
        self._apply_labels(name)

    def _start(
        self,
        jobs: dict[tuple[str, int], asyncio.Task[None]],
        name: str,
        version: int,
        job: Any,
    ) -> None:
        task = asyncio.create_task(job, name=f"{name}:{version}")
        jobs[(name, version)] = task
        task.add_done_callback(lambda _: jobs.pop((name, version), None))

    # ---- loading and unloading ------------------------------------------------------------

    def _load_model(self, folder: VersionDir, name: str) -> LoadedModel:
        relative = folder.path.relative_to(self.settings.model_dir)
        try:
            config = read_model_config(folder.path.parent, self.settings)
        except ModelConfigError as exc:
            raise ModelLoadError(str(exc)) from None
        return load_model(
            name,
            folder.version,
            folder.path.resolve(),
            self.server.runtime,
            config,
            relative.as_posix(),
        )

    async def _load(self, folder: VersionDir, name: str) -> None:
        version = folder.version
        key = f"load:{name}:{version}"
        self._once.clear(key)  # a folder changed since it last failed: its failure is news
        self.server.set_status(
            name, VersionStatus(version, ModelState.LOADING, fingerprint=folder.fingerprint)
        )
        metrics.version_state(name, version, ModelState.LOADING)
        logger.info("model %s version %d: loading from %s", name, version, folder.path)
        error = ""
        for attempt in range(self.settings.model_load_retries + 1):
            if attempt:
                await asyncio.sleep(self._backoff(attempt))
            started = time.perf_counter()
            permanent = False
            try:
                model = await self._loader.run(self._load_model, folder, name)
            except ModelLoadError as exc:
                model, error, permanent = None, str(exc), exc.permanent
            except Exception as exc:  # whatever else loading raised: may pass (I/O, memory)
                model, error = None, repr(exc)
            metrics.load_attempt(name, time.perf_counter() - started, ok=model is not None)
            now, _ = await asyncio.to_thread(fingerprint_of, folder.path)
            if now != folder.fingerprint:  # written to while we read it: not this one
                logger.info(
                    "model %s version %d changed while loading; retrying once it is still",
                    name,
                    version,
                )
                if model is not None:
                    model.close()
                self._forget(name, version)
                return
            if model is not None:
                self.server.publish(self.server.servable_for(model), folder.fingerprint)
                metrics.version_state(name, version, ModelState.AVAILABLE)
                self._once.clear(key)
                logger.info("model %s version %d is available (%s)", name, version, model.backend)
                self._reconcile(name)
                return
            if permanent:
                break  # the same folder will fail the same way: no retries
            logger.warning(
                "model %s version %d: load attempt %d failed: %s", name, version, attempt + 1, error
            )
        self._give_up(name, folder, error)
        self._trim_ended(name)
        self._reconcile(name)

    def _give_up(self, name: str, folder: VersionDir, error: str) -> None:
        """The version is END with its error until its folder changes; logged once."""
        version = folder.version
        self.server.set_status(
            name, VersionStatus(version, ModelState.END, error, folder.fingerprint)
        )
        metrics.version_state(name, version, ModelState.END)
        metrics.load_given_up(name)
        self._once.error(
            f"load:{name}:{version}",
            "model %s version %d cannot be loaded (%s); it is tried again only once %s changes",
            name,
            version,
            error,
            folder.path,
        )

    def _backoff(self, attempt: int) -> float:
        return float(max(self.settings.model_poll_s, 0.5) * 2 ** (attempt - 1))

    def _forget(self, name: str, version: int) -> None:
        entry = self.server.models.get(name)
        if entry is not None:
            entry.versions.pop(version, None)
        metrics.version_state(name, version, None)  # as the status API: no state at all

    async def _unload(self, name: str, version: int) -> None:
        servable = self.server.withdraw(name, version)
        metrics.version_state(name, version, ModelState.UNLOADING)
        logger.info("model %s version %d: unloading once its requests are answered", name, version)
        if servable is not None:
            await servable.drain()
        entry = self.server.models.get(name)
        status = entry.versions.get(version) if entry is not None else None
        if status is not None and status.state is ModelState.UNLOADING:
            self.server.set_status(name, VersionStatus(version, ModelState.END))
            metrics.version_state(name, version, ModelState.END)
        logger.info("model %s version %d unloaded", name, version)
        self._once.clear(f"gone:{name}:{version}")
        del servable
        self._trim_ended(name)
        # What TensorFlow's objects hold in reference cycles goes now, not at some later pause.
        await self._loader.run(gc.collect)
        self._reconcile(name)

    def _trim_ended(self, name: str) -> None:
        entry = self.server.models.get(name)
        if entry is None:
            return
        ended = sorted(v for v, s in entry.versions.items() if s.state is ModelState.END)
        for version in ended[:-MAX_ENDED]:
            del entry.versions[version]
            metrics.version_state(name, version, None)

    def _apply_labels(self, name: str) -> None:
        """Point each label at its version if that is available; else leave it where it was."""
        entry = self.server.models.get(name)
        if entry is None:
            return
        labels: dict[str, int] = {}
        for label, version in self._labels.get(name, {}).items():
            key = f"label:{name}:{label}"
            if version in entry.servables:
                labels[label] = version
                self._once.clear(key)
                continue
            kept = entry.labels.get(label)
            if kept is not None and kept in entry.servables:
                labels[label] = kept
                self._once.warning(
                    key,
                    "model %s label %r names version %d, which is not available: it stays on %d",
                    name,
                    label,
                    version,
                    kept,
                )
            else:
                self._once.warning(
                    key,
                    "model %s label %r names version %d, which is not available: not served yet",
                    name,
                    label,
                    version,
                )
        entry.labels = labels
