"""The service's own API: ``/v1/sentiment/predict``, ``/v1/digits/predict``, ``/v1/models``.

Errors are ``{"error": {"code": "...", "message": "..."}}``: a stable machine-readable code
beside the words. Every path no other protocol owns answers its errors this way.
"""

from __future__ import annotations

from typing import Any


def owns(path: str) -> bool:
    return True


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
