"""RECORD rows of an installed distribution, rewritten for the files a repair changed.

Only the rows of changed files are rewritten (``sha256=<urlsafe base64, no padding>`` and the size, as
pip and uv write them); every other line is kept byte for byte, with its own line ending (pip writes CRLF,
uv LF). A row for a new file (the repair manifest) is added at the end. ``pip uninstall`` removes what
RECORD lists, so a file the repair adds must be listed.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
from collections.abc import Mapping

__all__ = ["record_hash", "rewrite_record", "sha256_row"]


def record_hash(sha256_digest: bytes) -> str:
    """A RECORD hash field from a sha256 digest."""
    return "sha256=" + base64.urlsafe_b64encode(sha256_digest).rstrip(b"=").decode("ascii")


def sha256_row(data: bytes) -> tuple[str, int]:
    """(hash field, size) of a file's bytes."""
    return record_hash(hashlib.sha256(data).digest()), len(data)


def _row(path: str, hash_field: str, size: int) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([path, hash_field, str(size)])
    return out.getvalue()


def _ending(line: str) -> str:
    return line[len(line.rstrip("\r\n")) :]


def rewrite_record(data: bytes, rows: Mapping[str, tuple[str, int]]) -> bytes:
    """RECORD with ``rows`` (path -> (hash field, size)) set: existing rows replaced in place, new ones
    appended."""
    text = data.decode("utf-8")
    lines = text.splitlines(keepends=True)
    parsed = [next(csv.reader([line.rstrip("\r\n")]), []) for line in lines]
    if any(line.strip() and len(row) != 3 for line, row in zip(lines, parsed, strict=True)):
        return _rewrite_whole(text, rows)  # quoted newlines in a field: rewrite every row
    endings = [_ending(line) for line in lines if _ending(line)]
    newline = max(set(endings), key=endings.count) if endings else "\n"
    left = dict(rows)
    out: list[str] = []
    for line, row in zip(lines, parsed, strict=True):
        if len(row) == 3 and row[0] in left:
            hash_field, size = left.pop(row[0])
            out.append(_row(row[0], hash_field, size) + (_ending(line) or newline))
        else:
            out.append(line)
    if out and not _ending(out[-1]):
        out[-1] += newline
    out += [_row(path, h, size) + newline for path, (h, size) in left.items()]
    return "".join(out).encode("utf-8")


def _rewrite_whole(text: str, rows: Mapping[str, tuple[str, int]]) -> bytes:
    left = dict(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in csv.reader(io.StringIO(text, newline="")):
        if len(row) == 3 and row[0] in left:
            hash_field, size = left.pop(row[0])
            row = [row[0], hash_field, str(size)]
        if row:
            writer.writerow(row)
    for path, (h, size) in left.items():
        writer.writerow([path, h, str(size)])
    return out.getvalue().encode("utf-8")
