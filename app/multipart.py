"""A fast path for the plainest multipart/form-data bodies: only file fields of one name.

Starlette's form parser (python-multipart, a SpooledTemporaryFile per file) costs ~150 us for a
one-image upload, a large share of the digits route's time on the event loop. Bodies exactly
as clients write them (curl, requests, browsers) are split here instead; anything else (other
fields or headers, a charset, a preamble, odd whitespace, too many files) gets ``None`` and
goes to Starlette, so every error and edge case stays Starlette's.
"""

from __future__ import annotations

from python_multipart.multipart import parse_options_header

_ALLOWED_HEADERS = (b"content-disposition", b"content-type")


def simple_form_files(
    body: bytes, content_type: str, field: str, max_files: int
) -> list[tuple[str, bytes]] | None:
    """``(filename, content)`` of each part, when every part is a file in ``field`` and the body
    is in the plain form that Starlette parses the same way; otherwise ``None``."""
    media_type, params = parse_options_header(content_type)
    if media_type != b"multipart/form-data" or set(params) != {b"boundary"}:
        return None
    boundary = params[b"boundary"]
    if not boundary or b"\r" in boundary or b"\n" in boundary:
        return None
    if not body.startswith(b"--" + boundary + b"\r\n"):  # no preamble
        return None
    # ["", part, ..., part, closing]: each part begins with the CRLF after its delimiter, the
    # closing piece is "--" (and an optional CRLF). A delimiter followed by anything else is
    # not one for python-multipart: such bodies go to Starlette.
    _, *parts, closing = (b"\r\n" + body).split(b"\r\n--" + boundary)
    if closing not in (b"--", b"--\r\n") or not parts or len(parts) > max_files:
        return None
    files = []
    name = field.encode()
    for part in parts:
        if not part.startswith(b"\r\n"):
            return None
        head, sep, content = part[2:].partition(b"\r\n\r\n")
        if not sep:
            return None
        filename = _file_of(head, name)
        if filename is None:
            return None
        files.append((filename, content))
    return files


def _file_of(head: bytes, name: bytes) -> str | None:
    """The decoded filename, if the part's headers are plain and make it a file in ``name``."""
    disposition = None
    for line in head.split(b"\r\n"):
        header, sep, value = line.partition(b": ")
        if not sep or b"\r" in line or b"\n" in line or value[:1] in (b" ", b"\t"):
            return None
        header = header.lower()
        if header not in _ALLOWED_HEADERS:
            return None
        if header == b"content-disposition":
            if disposition is not None:
                return None
            disposition = value
    if disposition is None:
        return None
    kind, options = parse_options_header(disposition)
    if kind != b"form-data" or options.get(b"name") != name or b"filename" not in options:
        return None
    filename = options[b"filename"]
    try:  # as Starlette decodes it (utf-8, else latin-1)
        return filename.decode("utf-8")
    except UnicodeDecodeError:
        return filename.decode("latin-1")
