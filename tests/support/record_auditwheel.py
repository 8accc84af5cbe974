"""Record ``auditwheel show --json`` for real wheels into ``auditwheel_show.json`` (run by hand, once per
auditwheel upgrade; the tests only read the recording and never run auditwheel).

    python tests/support/record_auditwheel.py WHEEL...

Each wheel is added (or replaced) with its name, version, file name, sha256 and size — so
``fetch.fetch(entry)`` can get it again — and auditwheel's verdict: ``overall_tag`` (the headline),
``sym_tag``, ``external_libs``, ``unsupported_isa`` and ``pyfpe``. ``consistent_with`` (what wheelfix must
say) is set to the headline (None for ``linux_*``) unless the entry already records a ``difference``, the
documented reason wheelfix says something else (docs/checks.md#verdicts-compared-with-auditwheel-show).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RECORDING = HERE / "auditwheel_show.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def headline(tag: str | None) -> str | None:
    """auditwheel's headline as wheelfix's ``consistent_with`` says it (``linux_x86_64``: None)."""
    return None if tag is None or tag.startswith("linux_") else tag


def record(wheel: Path, known: dict[str, Any] | None) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "auditwheel", "show", "--json", str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    show = json.loads(proc.stdout) if proc.stdout.strip() else {"error": proc.stderr.strip()[-300:]}
    name, version = wheel.name.split("-")[:2]
    entry: dict[str, Any] = {
        "name": name,
        "version": version,
        "filename": wheel.name,
        "sha256": _sha256(wheel),
        "size": wheel.stat().st_size,
        "why": "verdict compared with auditwheel show",
        "auditwheel": {
            "overall_tag": show.get("overall_tag"),
            "sym_tag": show.get("sym_tag"),
            "external_libs": sorted(show.get("external_libs", {})),
            "unsupported_isa": show.get("unsupported_isa", False),
            "pyfpe": show.get("pyfpe", False),
            "error": show.get("error"),
        },
        "consistent_with": headline(show.get("overall_tag")),
        "difference": None,
    }
    if known is not None:
        entry["why"] = known.get("why", entry["why"])
        if known.get("difference"):
            entry["difference"] = known["difference"]
            entry["consistent_with"] = known["consistent_with"]
    return entry


def main(argv: list[str]) -> int:
    doc = json.loads(RECORDING.read_text()) if RECORDING.exists() else {"wheels": []}
    by_name = {e["filename"]: e for e in doc["wheels"]}
    version = subprocess.run(
        [sys.executable, "-m", "auditwheel", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()[1]
    for arg in argv:
        path = Path(arg)
        by_name[path.name] = record(path, by_name.get(path.name))
        print(path.name, by_name[path.name]["auditwheel"]["overall_tag"], file=sys.stderr)
    doc = {
        "description": doc.get("description", "auditwheel show --json, recorded by record_auditwheel.py"),
        "auditwheel": version,
        "wheels": [by_name[k] for k in sorted(by_name)],
    }
    RECORDING.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
