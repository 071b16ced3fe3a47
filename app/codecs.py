"""What the protocols' codecs share: base64 text, image files decoded as uploads are, and
the size of JSON body that is parsed on the event loop.

An image file reaches a model the same way whichever protocol carried it (a multipart upload,
TF Serving's ``{"b64": ...}``, an OIP ``BYTES`` element): :func:`app.inputs.decode_digit`, on
the event loop when the file is small and declares a small picture, else off it
(:func:`app.offload.off_loop`); a file too large to decode is a 413, any other bad file a 400.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np

from app.errors import InvalidInput, PayloadTooLarge, ServiceError
from app.inputs import ImageError, decode_digit, decodes_quickly
from app.offload import off_loop

# JSON bodies this small are parsed on the event loop (cheaper than a hand-off to a thread);
# larger ones on the decoding threads, under the request's deadline.
INLINE_PARSE_BYTES = 64 * 1024


def b64decode(text: str, where: str, problem: str = "is not valid base64") -> bytes:
    """Standard or URL-safe base64, padding optional; InvalidInput ``"{where} {problem}"``."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where} {problem}") from None


def image_error(exc: ImageError, where: str) -> ServiceError:
    """The service's error for a file that is not a usable image: 413 if too large, else 400."""
    if exc.too_large:
        return PayloadTooLarge(f"{where}: {exc}")
    return InvalidInput(f"{where}: {exc}")


async def decode_image_file(data: bytes, max_side: int, where: str) -> np.ndarray:
    """An image file -> 28x28 pixels, small ones on the event loop, the rest off it."""
    try:
        if decodes_quickly(data):
            return decode_digit(data, max_side)
        return await off_loop(decode_digit, data, max_side)
    except ImageError as exc:
        raise image_error(exc, where) from exc
