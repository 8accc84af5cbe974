"""Fetch the pinned real wheels listed in ``realwheels.json`` (the manifest) into a local cache.

Stdlib only. Each wheel is identified by its exact filename, sha256 and size; a cached
file is reused only when its sha256 matches, otherwise the exact version is downloaded
again with ``pip download`` into a temporary directory inside the cache, verified, and
renamed into place atomically.

CLI, in the repository root: ``python -m tests.support.realwheels [--ci | --bench | --all]`` prints one path
per line (``python tests/support/realwheels.py`` works too: this module needs nothing but the standard
library, and bench/ imports it with only tests/support/ on sys.path).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CACHE_DIR = Path(os.environ.get("WHEELFIX_CACHE") or "~/.cache/wheelfix/wheels").expanduser()
MANIFEST = Path(__file__).resolve().with_name("realwheels.json")

_REQUIRED = {"name": str, "version": str, "filename": str, "sha256": str, "size": int, "why": str}
_FLAGS = ("ci", "bench")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class FetchError(RuntimeError):
    """A pinned wheel could not be fetched or failed verification."""


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wheel_tags(filename: str) -> tuple[str, str, list[str], list[str], list[str]]:
    """Split a wheel filename into (distribution, version, python tags, abi tags, platform tags)."""
    if not filename.endswith(".whl"):
        raise ValueError(f"not a wheel filename: {filename!r}")
    parts = filename[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        raise ValueError(f"malformed wheel filename: {filename!r}")
    dist, version = parts[0], parts[1]
    python, abi, platform = parts[-3:]
    return dist, version, python.split("."), abi.split("."), platform.split(".")


def _validate(entry: dict[str, Any]) -> dict[str, Any]:
    label = entry.get("filename", entry)
    for key, typ in _REQUIRED.items():
        if not isinstance(entry.get(key), typ):
            raise ValueError(f"manifest entry {label}: {key!r} missing or not {typ.__name__}")
    for flag in _FLAGS:
        entry.setdefault(flag, False)
        if not isinstance(entry[flag], bool):
            raise ValueError(f"manifest entry {label}: {flag!r} must be a boolean")
    if not _SHA256.fullmatch(entry["sha256"]):
        raise ValueError(f"manifest entry {label}: sha256 must be 64 lowercase hex digits")
    dist, version, *_ = _wheel_tags(entry["filename"])
    if _normalize(dist) != _normalize(entry["name"]) or version != entry["version"]:
        raise ValueError(f"manifest entry {label}: filename does not match name/version")
    return entry


def load_manifest(path: Path = MANIFEST) -> list[dict[str, Any]]:
    """Return the validated manifest entries; ``ci`` and ``bench`` are always present booleans."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return [_validate(dict(entry)) for entry in data["wheels"]]


# macOS wheels for the Mach-O reader/editor/signer tests (tests/formats/test_macho_real.py), the
# macOS pipeline (tests/cli/test_macho_pipeline.py) and the darwin Nix fragment; not in the manifest, whose
# entries are Linux wheels found by name.
MACOS_WHEELS: list[dict[str, Any]] = [
    {
        "name": "numpy",
        "version": "2.4.6",
        "filename": "numpy-2.4.6-cp311-cp311-macosx_11_0_arm64.whl",
        "sha256": "110f8b71aacb688ec69062bb7f6938a0f8acb01b7c1c4beb453c65b6d234584d",
        "size": 14964111,
        "why": "arm64; delocated OpenBLAS/libgfortran in numpy/.dylibs; signed by ld64 and codesign",
    },
    {
        "name": "numpy",
        "version": "2.4.6",
        "filename": "numpy-2.4.6-cp311-cp311-macosx_10_9_x86_64.whl",
        "sha256": "0280e0356c0829a18d9de1cb7eee50ec22ca639878d7240307ca0943d73cd2c4",
        "size": 16969194,
        "why": "x86_64; LC_VERSION_MIN_MACOSX 10.x; SHA-1 + SHA-256 CodeDirectories from codesign",
    },
    {
        "name": "pillow",
        "version": "12.0.0",
        "filename": "pillow-12.0.0-cp311-cp311-macosx_11_0_arm64.whl",
        "sha256": "a3475b96f5908b3b16c47533daaa87380c491357d197564e0ba34ae75c0f3257",
        "size": 4650589,
        "why": "arm64; many bundled codec dylibs; some extensions with less than 16 bytes of header padding",
    },
    {
        "name": "scipy",
        "version": "1.16.3",
        "filename": "scipy-1.16.3-cp311-cp311-macosx_14_0_arm64.whl",
        "sha256": "bea0a62734d20d67608660f69dcda23e7f90fb4ca20974ab80b6ed40df87a005",
        "size": 20931935,
        "why": "arm64, minos 14.0; 117 Mach-O files; Fortran runtime",
    },
    {
        "name": "MarkupSafe",
        "version": "3.0.2",
        "filename": "MarkupSafe-3.0.2-cp311-cp311-macosx_10_9_universal2.whl",
        "sha256": "9025b4018f3a1314059769c7bf15441064b2207cb3f065e6ea1e7359cb46db9d",
        "size": 14353,
        "why": "universal2: fat file, arm64 slice signed, x86_64 slice not",
    },
    {
        "name": "cryptography",
        "version": "46.0.3",
        "filename": "cryptography-46.0.3-cp311-abi3-macosx_10_9_universal2.whl",
        "sha256": "109d4ddfadf17e8e7779c39f9b18111a09efb969a301a31e987416a0191ed93a",
        "size": 7225004,
        "why": "universal2 abi3; one large fat Rust extension",
    },
    {
        "name": "pyzmq",
        "version": "27.1.0",
        "filename": "pyzmq-27.1.0-cp311-cp311-macosx_10_15_universal2.whl",
        "sha256": "226b091818d461a3bef763805e75685e478ac17e9008f49fce2d3e52b3d58b86",
        "size": 1333328,
        "why": "universal2 with a bundled fat libzmq; both slices codesign-signed",
    },
]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _pip_download_command(entry: dict[str, Any], dest: Path) -> list[str]:
    """``pip download`` restricted to exactly the tags in the pinned filename."""
    _, _, pythons, abis, platforms = _wheel_tags(entry["filename"])
    cpython = [tag for tag in pythons if re.fullmatch(r"cp3\d+", tag)]
    if cpython:
        python_version = f"3.{cpython[0][3:]}"
        implementation = ["--implementation", "cp"]
    else:  # py3 / py2.py3: any Python 3 matches the tag
        python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
        implementation = []
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--python-version",
        python_version,
        *implementation,
        *(arg for abi in abis for arg in ("--abi", abi)),
        *(arg for platform in platforms for arg in ("--platform", platform)),
        "--dest",
        str(dest),
        f"{entry['name']}=={entry['version']}",
    ]


def fetch(entry: dict[str, Any], cache_dir: Path | None = None) -> Path:
    """Return the verified cached wheel for ``entry``, downloading it if needed."""
    cache = CACHE_DIR if cache_dir is None else cache_dir
    target: Path = cache / entry["filename"]
    if target.is_file() and _sha256(target) == entry["sha256"]:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as tmp:
        command = _pip_download_command(entry, Path(tmp))
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
            raise FetchError(
                f"pip download failed for {entry['filename']} (exit {proc.returncode}):\n" + "\n".join(tail)
            )
        downloaded = Path(tmp) / entry["filename"]
        if not downloaded.is_file():
            got = sorted(p.name for p in Path(tmp).iterdir())
            raise FetchError(
                f"pip download of {entry['name']}=={entry['version']} gave {got}, "
                f"not the pinned {entry['filename']}"
            )
        size = downloaded.stat().st_size
        if size != entry["size"]:
            raise FetchError(f"{entry['filename']}: size {size} != pinned {entry['size']}")
        sha = _sha256(downloaded)
        if sha != entry["sha256"]:
            raise FetchError(f"{entry['filename']}: sha256 {sha} != pinned {entry['sha256']}")
        os.replace(downloaded, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch the pinned real wheels and print their paths.")
    group = parser.add_mutually_exclusive_group()
    for flag, help_text in (
        ("ci", "wheels used by the oracle test (default)"),
        ("bench", "wheels used by the benchmarks"),
        ("all", "every wheel in the manifest"),
    ):
        group.add_argument(f"--{flag}", action="store_const", const=flag, dest="which", help=help_text)
    args = parser.parse_args(argv)
    which: str = args.which or "ci"
    entries = [e for e in load_manifest() if which == "all" or e[which]]
    for entry in entries:
        print(f"fetching {entry['filename']} ...", file=sys.stderr, flush=True)
        try:
            path = fetch(entry)
        except FetchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(path, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
