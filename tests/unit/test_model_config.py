"""Per-model settings (``<model>/config.toml``) over the environment's."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings
from app.model_config import ModelConfig, ModelConfigError, read_model_config


def config(tmp_path: Path, text: str | None, **settings: object) -> ModelConfig:
    if text is not None:
        (tmp_path / "config.toml").write_text(text)
    return read_model_config(tmp_path, Settings(**settings))  # type: ignore[arg-type]


def test_without_a_file_the_environment_decides(tmp_path: Path) -> None:
    got = config(tmp_path, None, max_batch_size=8, max_batch_delay_ms=2, max_queue_size=9)
    assert got == ModelConfig(8, 2.0, 1, 9)


def test_the_file_overrides_what_it_names(tmp_path: Path) -> None:
    got = config(
        tmp_path,
        "max_batch_delay_ms = 5\nallowed_batch_sizes = [4, 16]\nmax_concurrent_batches = 2\n",
        max_batch_size=64,
    )
    assert got.max_batch_size == 16  # the largest allowed size
    assert got.allowed_batch_sizes == (4, 16)
    assert got.max_batch_delay_ms == 5.0
    assert got.max_concurrent_batches == 2
    assert got.batching


def test_stateful_means_unbatched_and_one_call_at_a_time(tmp_path: Path) -> None:
    got = config(tmp_path, "stateful = true\nmax_concurrent_batches = 4\n")
    assert (got.stateful, got.batching, got.max_concurrent_batches) == (True, False, 1)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("max_batch_size = 0", "max_batch_size must be a whole number >= 1"),
        ("max_batch_size = 2.5", "whole number"),
        ("batching = 1", "true or false"),
        ("allowed_batch_sizes = [8, 4]", "increasing"),
        ("allowed_batch_sizes = [4, 8]\nmax_batch_size = 16", "must equal max_batch_size"),
        ("max_batch_delay_ms = -1", ">= 0"),
        ("max_batch_sise = 4", "unknown keys max_batch_sise"),
        ("max_batch_size = ", "not valid TOML"),
    ],
)
def test_a_wrong_file_names_itself_and_the_problem(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ModelConfigError) as caught:
        config(tmp_path, text)
    assert str(tmp_path / "config.toml") in str(caught.value)
    assert words in str(caught.value)
