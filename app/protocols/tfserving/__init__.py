"""TensorFlow Serving's REST API: ``/v1/models/{name}[/versions/{v}|/labels/{l}][/metadata|:predict]``.

Errors are TF Serving's ``{"error": "..."}``.
"""

from __future__ import annotations

from typing import Any

PREFIX = "/v1/models/"


def owns(path: str) -> bool:
    return path.startswith(PREFIX)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": message}
