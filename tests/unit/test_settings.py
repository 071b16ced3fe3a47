"""Settings come from the environment, and the README documents every one of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_environment_variables_override_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("DEVICE", "cpu")
    monkeypatch.setenv("API_KEYS", "alpha, beta,,")
    monkeypatch.setenv("METRICS_PUBLIC", "false")
    settings = Settings(_env_file=None)
    assert settings.max_batch_size == 8
    assert settings.device == "cpu"
    assert [key.get_secret_value() for key in settings.api_keys] == ["alpha", "beta"]
    assert settings.metrics_public is False
    assert "alpha" not in repr(settings)


def test_defaults_are_the_documented_ones() -> None:
    settings = Settings(_env_file=None)
    assert settings.max_batch_size == 64
    assert settings.max_batch_delay_ms == 0
    assert settings.max_concurrent_batches == 1
    assert settings.max_queue_size == 1024
    assert settings.request_timeout_s == 10
    assert settings.max_instances == 256
    assert settings.max_review_chars == 100_000
    assert settings.max_request_bytes == 10 * 1024 * 1024
    assert settings.api_keys == []


@pytest.mark.parametrize(
    ("name", "value"), [("DEVICE", "tpu"), ("MAX_BATCH_SIZE", "0"), ("PORT", "http")]
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


def _as_documented(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if value == []:
        return "empty"
    return str(value)


def test_readme_documents_every_setting_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| `?([^`|]*?)`? \|", README.read_text(), re.M))
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        assert name.upper() in rows, f"README.md does not document {name.upper()}"
        assert rows[name.upper()] == _as_documented(default), name.upper()
