"""GitHub Actions workflow commands (``::error file=...::message``) for check findings."""

from __future__ import annotations

from wheelfix.analysis.check import CheckResult

__all__ = ["render_github"]


def _data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(s: str) -> str:
    return _data(s).replace(":", "%3A").replace(",", "%2C")


def render_github(result: CheckResult) -> str:
    lines = []
    for f in result.findings:
        members = f" (in {', '.join(f.members)})" if f.members else ""
        title = _prop(f"wheelfix {f.code}")
        lines.append(f"::{f.severity} file={_prop(f.wheel)},title={title}::{_data(f.message + members)}")
    return "".join(line + "\n" for line in lines)
