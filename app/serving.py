"""The loaded models, each with its batcher: what the routes talk to."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np

from app.batching import MicroBatcher
from app.config import Settings
from app.errors import NotFound
from app.metrics import ModelMetrics
from app.registry import LoadedModel, configure_tensorflow, load_models

logger = logging.getLogger(__name__)


@dataclass
class Servable:
    """One version of a model and the batcher that feeds it."""

    model: LoadedModel
    batcher: MicroBatcher


class ModelServer:
    """Looks models up by name and version, and runs their batchers."""

    def __init__(self, models: dict[str, dict[int, LoadedModel]], settings: Settings) -> None:
        self.servables: dict[str, dict[int, Servable]] = {
            name: {
                version: Servable(
                    model,
                    MicroBatcher(
                        f"{name}:{version}",
                        model.predict,
                        max_batch_size=settings.max_batch_size,
                        max_batch_delay_s=settings.max_batch_delay_ms / 1000,
                        max_concurrent_batches=settings.max_concurrent_batches,
                        max_queue_size=settings.max_queue_size,
                        timeout_s=settings.request_timeout_s,
                        observer=ModelMetrics(name),
                    ),
                )
                for version, model in versions.items()
            }
            for name, versions in models.items()
        }
        self.settings = settings
        self.ready = False

    @classmethod
    def load(cls, settings: Settings) -> ModelServer:
        """Load and warm up every model under ``MODEL_DIR``; raises ModelLoadError."""
        device = configure_tensorflow(
            settings.device, settings.tf_intra_op_threads, settings.tf_inter_op_threads
        )
        logger.info("DEVICE=%s: models run on %s", settings.device, device)
        return cls(load_models(settings.model_dir, device, settings.max_batch_size), settings)

    def start(self) -> None:
        for servable in self:
            servable.batcher.start()
        self.ready = True

    async def stop(self) -> None:
        """Stop taking requests; answer every queued one first."""
        self.ready = False
        await asyncio.gather(*(servable.batcher.close() for servable in self))

    def __iter__(self):
        for versions in self.servables.values():
            yield from versions.values()

    def get(self, name: str, version: int | None = None) -> Servable:
        """The named model's given version, or its highest; NotFound if there is none."""
        versions = self.servables.get(name)
        if versions is None:
            raise NotFound(f"model {name!r} is not served (served: {', '.join(self.servables)})")
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            raise NotFound(
                f"model {name!r} has no version {version} (versions: {sorted(versions)})"
            )
        return versions[version]

    async def predict(
        self, name: str, inputs: np.ndarray, version: int | None = None
    ) -> tuple[LoadedModel, np.ndarray]:
        servable = self.get(name, version)
        return servable.model, await servable.batcher.predict(inputs)
