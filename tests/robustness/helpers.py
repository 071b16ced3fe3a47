"""Shared by the robustness tests: the server handle, hostile files, raw HTTP."""

from __future__ import annotations

import io
import re
import socket
import struct
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import httpx
import numpy as np
from PIL import Image

from tests.support.server import metric_total, model_calls, rss_kib
from tests.support.waiting import wait_until

# The servers' settings (see conftest.py).
MAX_REQUEST_BYTES = 2 * 1024 * 1024  # ``server``
BUSY_QUEUE = 4  # ``busy_server``: MAX_QUEUE_SIZE
API_KEYS = (
    "robust-key-1",
    "robust-key-2",
)  # both on ``busy_server``, the second on ``faulty_server``
FAULTY_AUTH = {"Authorization": f"Bearer {API_KEYS[1]}"}  # ``faulty_server``'s key
FAULTY_TIMEOUT_S = 3.0  # ``faulty_server``'s REQUEST_TIMEOUT_S

REVIEWS = [
    "An absolute masterpiece, moving and beautifully acted.",
    "Dull, predictable and far too long. I hated it.",
    "Not bad, though the ending felt rushed.",
    "One of the worst films I have ever seen.",
]


@dataclass
class Server:
    proc: Popen
    url: str
    fault_file: Path | None = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def rss_mib(self) -> float:
        return rss_kib(self.proc) / 1024

    def peak_rss_mib(self) -> float:
        """The most resident memory the process has had so far (VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmHWM for process {self.proc.pid}")

    def fault(self, spec: str) -> None:
        """Set the fault of ``tests.support.faulty_app`` (``faulty_server`` only)."""
        assert self.fault_file is not None
        self.fault_file.write_text(spec)

    def model_calls(self, model: str) -> list[int]:
        """Instances of each call that reached ``model``, in order, since ``forget_calls``;
        written by ``tests.support.faulty_app`` as each call enters (``faulty_server`` only)."""
        assert self.fault_file is not None
        return model_calls(self.fault_file, model)

    def forget_calls(self) -> None:
        assert self.fault_file is not None
        self.fault_file.with_name(self.fault_file.name + ".calls").write_text("")

    def metric(self, name: str, headers: dict[str, str] | None = None, **labels: str) -> float:
        """The sum of ``/metrics``' samples called ``name`` with these labels (0 if none)."""
        return metric_total(self.url, name, headers, **labels)


def answers(server: Server) -> bool:
    """Whether a sentiment prediction succeeds on ``faulty_server`` now (504: a call is still
    held in the model)."""
    response = httpx.post(
        f"{server.url}/v1/sentiment/predict",
        json={"reviews": ["fine"]},
        headers=FAULTY_AUTH,
        timeout=30,
    )
    assert response.status_code in (200, 504), response.text
    return response.status_code == 200


def hold_sentiment_threads(server: Server, pool: ThreadPoolExecutor) -> list[Future[int]]:
    """On ``faulty_server`` with fault ``block:sentiment``: one request per sentiment model
    thread (MAX_CONCURRENT_BATCHES=2), sent one after the other so that each is a call of its
    own, both held inside the model. Returns the futures of their status codes."""

    def post(review: str) -> int:
        response = httpx.post(
            f"{server.url}/v1/sentiment/predict",
            json={"reviews": [review]},
            headers=FAULTY_AUTH,
            timeout=30,
        )
        return response.status_code

    held = []
    for n in (1, 2):
        held.append(pool.submit(post, f"held {n}"))
        wait_until(lambda n=n: server.model_calls("sentiment") == [1] * n, f"{n} call(s) held")
    return held


# ---- files ------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def digit_image(size: int = 28) -> Image.Image:
    """A white '1'-like stroke on black: a valid digit at any size."""
    pixels = np.zeros((size, size), dtype=np.uint8)
    pixels[
        size // 5 : size - size // 5,
        size // 2 - max(1, size // 14) : size // 2 + max(1, size // 14),
    ] = 255
    return Image.fromarray(pixels)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_bomb(side: int = 50_000) -> bytes:
    """A valid 1-bit PNG of side x side black pixels (312 MB raw at 50,000) in about 300 KB.

    The rows are all zero, so one deflate block of 1,000 rows, ended by a full flush (which
    resets the compressor's history), can simply be repeated.
    """
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    rows_per_block = 1000
    block = row * rows_per_block
    compressor = zlib.compressobj(9)
    compressed_block = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    blocks, rest = divmod(side, rows_per_block)
    tail_compressor = zlib.compressobj(9)
    tail = tail_compressor.compress(row * rest) + tail_compressor.flush(zlib.Z_FINISH)
    # The tail stream's own header (2 bytes) and checksum (4) are replaced by the whole one's.
    adler = 1
    for _ in range(blocks):
        adler = zlib.adler32(block, adler)
    adler = zlib.adler32(row * rest, adler)
    header = compressed_block[:2]
    body = compressed_block[2:] * blocks + tail[2:-4]
    idat = header + body + struct.pack(">I", adler & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def animated_gif() -> bytes:
    frames = [digit_image(28), Image.new("L", (28, 28), 128), Image.new("L", (28, 28), 255)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


# ---- raw HTTP -----------------------------------------------------------------------------


def raw_request(port: int, data: bytes, timeout: float = 30.0) -> bytes:
    """Send ``data`` as is on a fresh connection; read one answer (or until the server closes).

    The write side stays open: a half-closed connection makes uvicorn drop the request.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return answer
            if not chunk:
                return answer
            answer += chunk
            head, sep, body = answer.partition(b"\r\n\r\n")
            if sep:
                match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if match and len(body) >= int(match[1]):
                    return answer


def status_of(answer: bytes) -> int:
    """The status code of a raw HTTP/1.1 answer."""
    return int(answer.split(b" ", 2)[1])
