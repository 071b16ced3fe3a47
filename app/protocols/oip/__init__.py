"""The Open Inference Protocol (KServe's V2, Triton's HTTP API): ``/v2/...``.

Errors are the protocol's ``{"error": "..."}``.
"""

from __future__ import annotations

from typing import Any

PREFIX = "/v2"


def owns(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": message}
