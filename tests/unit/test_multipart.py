"""The multipart fast path: whatever it accepts, Starlette's parser reads the same way."""

from __future__ import annotations

import random

import httpx
import pytest
from starlette.datastructures import UploadFile
from starlette.requests import Request

from app.multipart import simple_form_files

BOUNDARY = "b0undary"
CTYPE = f"multipart/form-data; boundary={BOUNDARY}"


def part(disposition: str, content: bytes, extra: str = "Content-Type: image/png\r\n") -> bytes:
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{extra}\r\n"
    return head.encode() + content + b"\r\n"


def body(*parts: bytes, end: bytes = b"\r\n") -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--".encode() + end


async def starlette_files(data: bytes, content_type: str) -> list | tuple:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "query_string": b"",
        "headers": [(b"content-type", content_type.encode("latin-1"))],
    }
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": data, "more_body": False}

    try:
        async with Request(scope, receive).form(max_files=256, max_fields=256) as form:
            return [
                (key, value.filename, await value.read())
                if isinstance(value, UploadFile)
                else (key, None, value)
                for key, value in form.multi_items()
            ]
    except Exception as exc:
        return ("error", type(exc).__name__)


PNG = b"\x89PNG\r\n\x1a\n\r\n--b0und\r\n--"  # CRLFs and dashes inside the data


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (body(part('form-data; name="file"; filename="a.png"', PNG)), [("a.png", PNG)]),
        (
            body(
                part('form-data; name="file"; filename="a.png"', b"1"),
                part('form-data; name="file"; filename=""', b"", extra=""),
                end=b"",
            ),
            [("a.png", b"1"), ("", b"")],
        ),
        (body(part('form-data; name="file"; filename="ü.png"', b"x")), [("ü.png", b"x")]),
    ],
)
async def test_plain_bodies_are_split_as_starlette_does(data: bytes, expected: list) -> None:
    assert simple_form_files(data, CTYPE, "file", 256) == expected
    assert await starlette_files(data, CTYPE) == [("file", f, c) for f, c in expected]


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (body(part('form-data; name="other"; filename="a.png"', b"x")), CTYPE),  # other field
        (body(part('form-data; name="file"', b"text")), CTYPE),  # a text field
        (body(part('form-data; name="file"; filename="a"', b"x", extra="X-Y: 1\r\n")), CTYPE),
        (b"preamble\r\n" + body(part('form-data; name="file"; filename="a"', b"x")), CTYPE),
        (body(part('form-data; name="file"; filename="a"', b"x"), end=b"\r\nepilogue"), CTYPE),
        (body(part('form-data; name="file"; filename="a"', b"x")), CTYPE + "; charset=latin-1"),
        (body(part('form-data; name="file"; filename="a"', b"x\r\n--b0undary--x")), CTYPE),
        (body(part('form-data; name="file"; filename="a"', b"x\r\n--b0undary-ish")), CTYPE),
        (body(), CTYPE),  # no part at all
        (body(part('form-data; name="file"; filename="a"', b"x")), "multipart/form-data"),
        (b"--b0undary\r\nContent-Disposition:form-data; name=file; filename=a\r\n\r\nx", CTYPE),
    ],
)
def test_anything_else_goes_to_starlette(data: bytes, content_type: str) -> None:
    assert simple_form_files(data, content_type, "file", 256) is None


def test_more_files_than_allowed_go_to_starlette() -> None:
    data = body(*[part(f'form-data; name="file"; filename="{i}"', b"x") for i in range(3)])
    assert simple_form_files(data, CTYPE, "file", 3) is not None
    assert simple_form_files(data, CTYPE, "file", 2) is None


async def test_what_clients_send_is_read_as_starlette_reads_it() -> None:
    rng = random.Random(8)
    taken = 0
    for _ in range(300):
        files = [
            (
                "file",
                (
                    rng.choice(["d.png", "a b.png", ""]),
                    rng.randbytes(rng.choice([0, 10, 500])) + b"\r\n--" * rng.randint(0, 1),
                    "image/png",
                ),
            )
            for _ in range(rng.choice([1, 2, 5]))
        ]
        request = httpx.Request("POST", "http://x/", files=files)
        data, content_type = request.read(), request.headers["content-type"]
        fast = simple_form_files(data, content_type, "file", 256)
        if fast is not None:
            taken += 1
            assert await starlette_files(data, content_type) == [("file", f, c) for f, c in fast]
    assert taken > 100  # not those with filename "": httpx sends them as text fields
