"""Small wheels written by hand (no compiler): a minimal correct wheel around given members, for hostile
zips and Mach-O fixtures. The synthetic wheels built from C sources are :mod:`tests.support.synthetic`'s."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from collections.abc import Mapping
from pathlib import Path


def record_hash(data: bytes) -> str:
    """A RECORD hash: ``sha256=`` and the urlsafe base64 digest without padding."""
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def with_record(files: dict[str, bytes], dist_info: str) -> dict[str, bytes]:
    """``files`` plus a correct ``<dist_info>/RECORD``."""
    rows = []
    for name, data in files.items():
        rows.append(f"{name},{record_hash(data)},{len(data)}\n")
    rows.append(f"{dist_info}/RECORD,,\n")
    return {**files, f"{dist_info}/RECORD": "".join(rows).encode()}


def write_wheel(path: Path, files: dict[str, bytes]) -> Path:
    """A minimal correct wheel for project ``evil`` holding ``files`` (plus METADATA, WHEEL, RECORD)."""
    dist_info = "evil-1.0.dist-info"
    files = {
        **files,
        f"{dist_info}/METADATA": b"Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n",
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-linux_x86_64\n",
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in with_record(files, dist_info).items():
            zf.writestr(name, data)
    return path


def make_wheel(out_dir: Path, name: str, tag: str, files: Mapping[str, bytes]) -> Path:
    """A wheel with a proper WHEEL, METADATA and RECORD (sha256 of every member)."""
    dist = f"{name}-1.0.dist-info"
    members = dict(files)
    members[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode()
    members[f"{dist}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n".encode()
    )
    record = []
    for path, data in members.items():
        record.append(f"{path},{record_hash(data)},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    members[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    out = out_dir / f"{name}-1.0-{tag}.whl"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in members.items():
            zf.writestr(path, data)
    return out


def repack_wheel(path: Path, files: Mapping[str, bytes], dist_info: str) -> Path:
    """A wheel at ``path`` holding exactly ``files`` (their own METADATA and WHEEL included) and a correct
    ``<dist_info>/RECORD`` (any RECORD in ``files`` is replaced)."""
    members = {n: d for n, d in files.items() if n != f"{dist_info}/RECORD"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in with_record(members, dist_info).items():
            zf.writestr(name, data)
    return path
