"""Uploaded files as text: the one decoder every importer (stories, labelled sets, taxonomies) uses.

An upload must be UTF-8 (a byte-order mark is allowed), not binary, not empty and, where the
importer says so, not too large; otherwise the error names the file and what is wrong (the first
bad byte and its position in the file as uploaded). Newlines come back as `\\n`.
"""

from __future__ import annotations

MB = 1024 * 1024
_BOM = b"\xef\xbb\xbf"


class UploadError(ValueError):
    """An uploaded file that cannot be read as text (the stories' and labelled sets' file errors are ones)."""


def decode_upload(name: str, data: bytes, *, max_bytes: int | None = None,
                  error: type[ValueError] = UploadError) -> str:
    """The text of an uploaded file, or `error` (the importer's own error class) saying why not."""
    if max_bytes is not None and len(data) > max_bytes:
        raise error(f"{name}: {len(data) / MB:.1f} MB is over the {max_bytes // MB} MB limit")
    offset = len(_BOM) if data.startswith(_BOM) else 0
    try:
        text = data[offset:].decode("utf-8")
    except UnicodeDecodeError as failure:
        position = failure.start + offset
        raise error(f"{name}: not UTF-8 text (byte 0x{data[position]:02x} at position {position}); "
                    "save it as UTF-8 and upload again") from None
    if "\x00" in text:
        # Valid UTF-8 can still be a binary file (a .docx renamed .txt): NUL bytes give it away.
        raise error(f"{name}: looks like a binary file (it contains NUL bytes), not text")
    if not text.strip():
        raise error(f"{name}: the file is empty")
    return text.replace("\r\n", "\n").replace("\r", "\n")
