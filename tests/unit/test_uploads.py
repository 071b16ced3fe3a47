"""``app.uploads.read_form`` on hand-made multipart bodies: parts, limits, odd boundaries, and
bodies cut into chunks at every possible place (as a slow or a chunked client sends them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from python_multipart.multipart import parse_options_header

from app.uploads import FormError, FormPart, header_options, read_form

# File data that looks like the multipart syntax around it, without being a delimiter.
TRICKY = b"\x89PNG\r\n\x1a\n\r\n--b\r\n--bo\r\n\r\n--\x00\xff--boundary"


def part(name: str, data: bytes, filename: str | None = None, headers: str = "") -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    return f"Content-Disposition: {disposition}\r\n{headers}\r\n".encode() + data


def form(boundary: str, *parts: bytes) -> bytes:
    """A multipart body: each part (headers, blank line, data) after a delimiter, then the end."""
    delimiter = f"--{boundary}".encode()
    return b"".join(delimiter + b"\r\n" + p + b"\r\n" for p in parts) + delimiter + b"--\r\n"


async def chunks_of(body: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in body:
        yield chunk


def read(
    body: bytes | Iterable[bytes],
    boundary: str = "boundary",
    *,
    content_type: str | None = None,
    max_files: int = 8,
    max_fields: int = 8,
    max_field_bytes: int = 1024,
) -> list[tuple[str, str | None, bytes]]:
    chunks = [body] if isinstance(body, bytes) else body
    parts = asyncio.run(
        read_form(
            content_type or f"multipart/form-data; boundary={boundary}",
            chunks_of(chunks),
            max_files=max_files,
            max_fields=max_fields,
            max_field_bytes=max_field_bytes,
        )
    )
    assert all(isinstance(p, FormPart) for p in parts)
    return [(p.name, p.filename, p.data) for p in parts]


MIXED = form(
    "boundary",
    part("file", TRICKY, "a.png", "Content-Type: image/png\r\n"),
    part("note", b"a text field"),
    part("file", b"", "empty.png"),
    part("file", b"\x00" * 300, "zeros.bin"),
)
MIXED_PARTS = [
    ("file", "a.png", TRICKY),
    ("note", None, b"a text field"),
    ("file", "empty.png", b""),
    ("file", "zeros.bin", b"\x00" * 300),
]


def test_files_and_fields_come_back_in_order_with_their_bytes() -> None:
    assert read(MIXED) == MIXED_PARTS


def test_a_body_split_anywhere_in_two_reads_the_same() -> None:
    """Every cut: inside a delimiter, a header name or value, the CRLFs, the data."""
    for cut in range(1, len(MIXED)):
        assert read([MIXED[:cut], MIXED[cut:]]) == MIXED_PARTS, f"cut at byte {cut}"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_a_body_in_small_chunks_reads_the_same(size: int) -> None:
    chunks = [MIXED[i : i + size] for i in range(0, len(MIXED), size)]
    assert read(chunks) == MIXED_PARTS


def test_empty_chunks_change_nothing() -> None:
    half = len(MIXED) // 2
    assert read([b"", MIXED[:half], b"", b"", MIXED[half:], b""]) == MIXED_PARTS


@pytest.mark.parametrize(
    ("boundary", "content_type"),
    [
        ("x", None),
        ("a" * 70, None),  # the longest RFC 2046 allows
        ("a b", 'multipart/form-data; boundary="a b"'),  # a space, so quoted
        ("'()+_,-./:=? z", 'multipart/form-data; boundary="\'()+_,-./:=? z"'),  # every special
        ("x", "multipart/form-data; boundary=x; charset=utf-8"),  # not the last parameter
        ("x", "Multipart/Form-Data; BOUNDARY=x"),  # names are case-insensitive
        ("--", None),  # delimiters of four dashes
    ],
)
def test_odd_but_valid_boundaries(boundary: str, content_type: str | None) -> None:
    body = form(boundary, part("file", TRICKY, "a.png"), part("f", b"v"))
    expected = [("file", "a.png", TRICKY), ("f", None, b"v")]
    assert read(body, boundary, content_type=content_type) == expected
    assert read([bytes([b]) for b in body], boundary, content_type=content_type) == expected


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data", "multipart/form-data; boundary=", 'multipart/form-data; boundary=""'],
)
def test_no_boundary_is_refused(content_type: str) -> None:
    with pytest.raises(FormError, match="Missing boundary"):
        read(MIXED, content_type=content_type)


def test_a_body_with_another_boundary_is_refused() -> None:
    with pytest.raises(FormError, match="Invalid multipart data"):
        read(form("other", part("f", b"v")), "boundary")


def test_names_are_decoded_as_utf8_and_bad_bytes_replaced() -> None:
    body = form(
        "b",
        'Content-Disposition: form-data; name="fich\u00e9"; filename="\u00e7a.png"\r\n\r\nx'.encode(),
        b'Content-Disposition: form-data; name="f"; filename="\xff.png"\r\n\r\ny',
        b"content-disposition: form-data; name=unquoted\r\nX-Other: 1\r\n\r\nz",
    )
    assert read(body, "b") == [
        ("fich\u00e9", "\u00e7a.png", b"x"),
        ("f", "\ufffd.png", b"y"),
        ("unquoted", None, b"z"),
    ]


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Type: image/png\r\n",
        b'Content-Disposition: form-data; filename="a.png"\r\n',
    ],
    ids=["no Content-Disposition", "no name"],
)
def test_a_part_without_a_name_is_refused(headers: bytes) -> None:
    with pytest.raises(FormError, match='needs a Content-Disposition header with a "name"'):
        read(form("b", headers + b"\r\ndata"), "b")


def test_garbage_is_refused() -> None:
    with pytest.raises(FormError, match="Invalid multipart data"):
        read(b"this is not multipart at all")


# ---- limits --------------------------------------------------------------------------------


def test_files_up_to_the_limit_pass_one_more_is_refused() -> None:
    files = [part("file", b"x", f"{i}.png") for i in range(4)]
    assert len(read(form("b", *files), "b", max_files=4)) == 4
    with pytest.raises(FormError, match=r"Too many files\. Maximum number of files is 3\."):
        read(form("b", *files), "b", max_files=3)


def test_fields_up_to_the_limit_pass_one_more_is_refused() -> None:
    fields = [part(f"f{i}", b"x") for i in range(4)]
    assert len(read(form("b", part("file", b"x", "a.png"), *fields), "b", max_fields=4)) == 5
    with pytest.raises(FormError, match=r"Too many fields\. Maximum number of fields is 3\."):
        read(form("b", *fields), "b", max_fields=3)


def test_files_and_fields_are_counted_apart() -> None:
    body = form("b", *(part("file", b"x", f"{i}.png") for i in range(3)), part("f", b"x"))
    assert len(read(body, "b", max_files=3, max_fields=1)) == 4


def test_a_field_up_to_its_size_limit_passes_one_byte_more_is_refused() -> None:
    assert read(form("b", part("note", b"x" * 1024)), "b", max_field_bytes=1024)[0][2] == (
        b"x" * 1024
    )
    with pytest.raises(FormError, match="Field 'note' exceeded maximum size of 1KB"):
        read(form("b", part("note", b"x" * 1025)), "b", max_field_bytes=1024)


def test_a_field_over_its_limit_is_refused_when_it_arrives_in_small_chunks() -> None:
    body = form("b", part("note", b"x" * 1025))
    with pytest.raises(FormError, match="exceeded maximum size"):
        read([body[i : i + 10] for i in range(0, len(body), 10)], "b", max_field_bytes=1024)


def test_files_are_not_held_to_the_field_size_limit() -> None:
    data = bytes(range(256)) * 40
    assert read(form("b", part("file", data, "big.bin")), "b", max_field_bytes=1024)[0][2] == data


@pytest.mark.parametrize(
    ("build", "limits", "message"),
    [
        (lambda i: part("file", b"x", f"{i}.png"), {"max_files": 256}, "Too many files"),
        (lambda i: part(f"f{i}", b"x"), {"max_fields": 256}, "Too many fields"),
    ],
    ids=["files", "fields"],
)
def test_reading_stops_at_the_part_past_the_limit(build, limits, message) -> None:
    """10,000 parts, one chunk each: the body is read no further than the 257th part (what
    keeps a hostile form of 10,000 parts cheap)."""
    delimiter = b"--b\r\n"
    chunks = [delimiter + build(i) + b"\r\n" for i in range(10_000)] + [b"--b--\r\n"]
    taken = 0

    def counted() -> Iterable[bytes]:
        nonlocal taken
        for chunk in chunks:
            taken += 1
            yield chunk

    with pytest.raises(FormError, match=message):
        read(counted(), "b", **limits)
    assert taken == 257


def test_a_body_cut_short_is_refused() -> None:
    """Cut before its closing boundary, a form would silently lose its last part."""
    body = form("b", part("file", b"x", "1.png"), part("file", TRICKY, "2.png"))
    with pytest.raises(FormError):
        read(body[: body.index(TRICKY) + 5], "b")


# ---- one piece (split with bytes.find) against chunks (python-multipart) ----------------------

LINES = st.sampled_from([b"\r\n", b"\n", b"\r\n\r\n", b"--b", b"--b--", b"\r\n--b", b"--", b" "])
DATA = st.lists(st.one_of(st.binary(max_size=12), LINES), max_size=6).map(b"".join)
HEADER = st.sampled_from(
    [
        "Content-Type: image/png\r\n",
        'content-disposition: form-data; name="other"\r\n',
        "X-Odd:no-space\r\n",
        " X-Folded: value\r\n",
        "NoColon\r\n",
        "",
    ]
)
PART = st.builds(
    part,
    st.sampled_from(["file", "note", "f\u00e9", 'a"b']),
    DATA,
    st.one_of(st.none(), st.sampled_from(["a.png", "", "x\r.png"])),
    HEADER,
)


@settings(max_examples=300, deadline=None)
@example(parts=[part("file", b"x", "x\r.png")], prefix=b"", suffix=b"", cut=0)  # a CR in a header
@given(
    parts=st.lists(PART, max_size=5),
    prefix=st.sampled_from([b"", b"preamble\r\n", b"\r\n"]),
    suffix=st.sampled_from([b"", b"\r\n", b"epilogue", b"--b--\r\n"]),
    cut=st.integers(min_value=0),
)
def test_one_piece_reads_as_the_streaming_parser_reads(
    parts: list[bytes], prefix: bytes, suffix: bytes, cut: int
) -> None:
    """Whatever the body, read in one piece (the plain split, or the parser when it is not
    plain) it gives the parts or the error the parser gives it in two chunks."""
    body = prefix + form("b", *parts)[: -2 if suffix else None] + suffix
    cut = 1 + cut % max(len(body) - 1, 1)

    def outcome(chunks: list[bytes]) -> object:
        try:
            return read(chunks, "b", max_files=3, max_fields=3, max_field_bytes=16)
        except FormError as exc:
            return f"FormError: {exc}"

    assert outcome([body]) == outcome([body[:cut], body[cut:]])


@settings(max_examples=1000, deadline=None)
@example('form-data; name="file"; filename="seven.png"')
@example("multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW")
@example('form-data; name="a;b"; filename="C:\\\\x\\\\y.png"')
@example("form-data; name*=utf-8''x; name=y")
@example('form-data; NAME = "x" ; ')
@given(st.text(alphabet=' \t;="\\*aAbB/-._\xe9\r', max_size=40))
def test_header_options_read_as_python_multipart_reads_them(value: str) -> None:
    """The plain values' quick reading gives what python-multipart's parser gives, for any
    value, plain or not."""
    assert header_options(value) == parse_options_header(value)[1]
    assert header_options(value.encode("latin-1")) == parse_options_header(value)[1]
