"""Fixtures for tests/docker: the parsed Dockerfile and docker-compose.yml."""

from __future__ import annotations

from typing import Any

import pytest
from container_files import Dockerfile, load_compose, parse_dockerfile


@pytest.fixture(scope="session")
def dockerfile() -> Dockerfile:
    return parse_dockerfile()


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    return load_compose()
