"""The parts of a ``multipart/form-data`` body, read into memory.

Starlette's ``request.form()`` puts every file part in a SpooledTemporaryFile behind an
UploadFile, to be read back with an await: right for big files, but for digit images of a few
hundred bytes that bookkeeping costs the event loop about as much as the parsing itself
(``docs/performance.md``). Here the parts are plain bytes. Memory stays bounded: the
body is capped by ``MAX_REQUEST_BYTES`` before it gets here, text fields by ``max_field_bytes``.

A body that arrives in one piece and is written the way clients write forms (each boundary
line ending in CRLF, each header ``Name: value``, nothing before the first boundary) is split
with ``bytes.find`` (:func:`_split_plain`); any other body goes to python-multipart's parser,
which reads it as it arrives (a form of 10,000 parts is read no further than the part past a
limit) and says what is wrong with it. Both hand the parts to the same checks
(:class:`_FormReader`), in order, so limits and errors are the same either way.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks


class FormError(ValueError):
    """The body is not a multipart form this endpoint can take; the message says why."""


@dataclass(eq=False)
class FormPart:
    """One part of the form: a file when ``filename`` is not None, else a text field."""

    name: str = ""
    filename: str | None = None
    data: bytes = b""


class _FormReader:
    """python-multipart's callbacks, collecting parts and enforcing the limits."""

    def __init__(self, max_files: int, max_fields: int, max_field_bytes: int) -> None:
        self.max_files = max_files
        self.max_fields = max_fields
        self.max_field_bytes = max_field_bytes
        self.parts: list[FormPart] = []
        self._files = 0
        self._fields = 0
        self._part = FormPart()
        self._chunks: list[bytes] = []  # the data of the part being read
        self._size = 0
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self._part = FormPart()
        self._chunks = []
        self._size = 0
        self._disposition = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        options = header_options(self._disposition)
        if b"name" not in options:
            raise FormError('every part needs a Content-Disposition header with a "name"')
        self._part.name = options[b"name"].decode("utf-8", errors="replace")
        if b"filename" in options:
            self._files += 1
            if self._files > self.max_files:
                raise FormError(f"Too many files. Maximum number of files is {self.max_files}.")
            self._part.filename = options[b"filename"].decode("utf-8", errors="replace")
        else:
            self._fields += 1
            if self._fields > self.max_fields:
                raise FormError(f"Too many fields. Maximum number of fields is {self.max_fields}.")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._part.filename is None and self._size > self.max_field_bytes:
            raise FormError(
                f"Field {self._part.name!r} exceeded maximum size of "
                f"{self.max_field_bytes // 1024}KB."
            )
        self._chunks.append(data[start:end])

    def on_part_end(self) -> None:
        self._part.data = b"".join(self._chunks)
        self.parts.append(self._part)

    def add(self, disposition: bytes, data: bytes) -> None:
        """One whole part, as the parser's callbacks would have given it."""
        self.on_part_begin()
        self._disposition = disposition
        self.on_headers_finished()
        self.on_part_data(data, 0, len(data))
        self.on_part_end()


async def _next_piece(stream: AsyncIterator[bytes]) -> bytes:
    """The next chunk that is not empty; b"" at the end."""
    async for chunk in stream:
        if chunk:
            return chunk
    return b""


# A header value whose parameters are all ``key=token`` or ``key="text"``, with no backslash,
# no ``*`` in a key and no ``;`` or ``"`` inside a value: what clients send. For these,
# python-multipart's parse_options_header gives what the regular expressions below give.
_PLAIN_OPTIONS = re.compile(
    r'[^;"\\]*(?:;[ \t]*[^;="\\* \t]+[ \t]*=[ \t]*(?:"[^;"\\]*"|[^;"\\ \t]*)[ \t]*)*'
)
_OPTION = re.compile(r';[ \t]*([^;="\\* \t]+)[ \t]*=[ \t]*(?:"([^;"\\]*)"|([^;"\\ \t]*))')


def header_options(value: str | bytes) -> dict[bytes, bytes]:
    """The parameters of a header value (``boundary``, ``name``, ``filename``...), keys in
    lower case, as python-multipart's ``parse_options_header`` reads them.

    That parser splits and unquotes in Python, a few microseconds for each part of every
    form; a plainly written value is read here with two regular expressions instead, and any
    other goes to it (the unit tests hold the two to the same answers).
    """
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if _PLAIN_OPTIONS.fullmatch(text):
        return {
            key.lower().encode("latin-1"): (quoted or bare).encode("latin-1")
            for key, quoted, bare in _OPTION.findall(text)
        }
    return parse_options_header(text)[1]


class _NotPlain(Exception):
    """The body is not written the plain way :func:`_split_plain` reads."""


def _split_plain(body: bytes, boundary: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(Content-Disposition value, data) of each part of a plainly written form, in order;
    _NotPlain as soon as the body is written any other way (python-multipart then reads it,
    or says what is wrong)."""
    delimiter = b"--" + boundary
    if not body.startswith(delimiter + b"\r\n"):
        raise _NotPlain
    separator = b"\r\n" + delimiter
    position = len(delimiter) + 2
    while True:
        headers_end = body.find(b"\r\n\r\n", position)
        if headers_end < 0:
            raise _NotPlain
        disposition = None
        for line in body[position:headers_end].split(b"\r\n"):
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip() or b"\r" in line or b"\n" in line:
                raise _NotPlain
            if name.lower() == b"content-disposition":
                disposition = value.strip()
        data_end = body.find(separator, headers_end + 4)
        if data_end < 0 or disposition is None:
            raise _NotPlain
        after = data_end + len(separator)
        follows = body[after : after + 2]
        last = follows == b"--"
        if last and body[after + 2 :] not in (b"", b"\r\n"):
            raise _NotPlain
        if not last and follows != b"\r\n":
            raise _NotPlain
        yield disposition, body[headers_end + 4 : data_end]
        if last:
            return
        position = after + 2


async def read_form(
    content_type: str,
    body: AsyncIterator[bytes],
    *,
    max_files: int,
    max_fields: int,
    max_field_bytes: int = 64 * 1024,
) -> list[FormPart]:
    """Every part of the form, in order; FormError for a malformed body or a limit passed."""
    params = header_options(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise FormError("Missing boundary in multipart.")
    stream = aiter(body)
    first = await _next_piece(stream)
    second = await _next_piece(stream) if first else b""
    if not second:  # the whole body came in one piece: most forms
        try:
            reader = _FormReader(max_files, max_fields, max_field_bytes)
            for disposition, content in _split_plain(first, boundary):
                reader.add(disposition, content)
            return reader.parts
        except _NotPlain:
            pass
    reader = _FormReader(max_files, max_fields, max_field_bytes)
    try:
        parser = MultipartParser(boundary, reader.callbacks())
        parser.write(first)
        if second:
            parser.write(second)
            async for chunk in stream:
                parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise FormError("Invalid multipart data.") from exc
    if parser.state != MultipartState.END:  # cut short: its last part would be lost silently
        raise FormError("the multipart body ends before its closing boundary")
    return reader.parts
