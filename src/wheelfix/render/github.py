"""GitHub Actions workflow commands (``::error file=...::message``) for check findings: one per finding
(each already one cause and soname, listing its binaries), the dlopen hints of a wheel folded into one."""

from __future__ import annotations

from collections.abc import Sequence

from wheelfix.analysis.check import CheckResult, Finding
from wheelfix.errors import Problem

__all__ = ["render_github", "render_github_problems"]

_MAX_MEMBERS = 20  # an annotation is shown whole; the JSON document lists every binary


def _data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(s: str) -> str:
    return _data(s).replace(":", "%3A").replace(",", "%2C")


def _members(members: Sequence[str]) -> str:
    shown = ", ".join(members[:_MAX_MEMBERS])
    more = len(members) - _MAX_MEMBERS
    return f"{shown} (+{more} more)" if more > 0 else shown


def _line(kind: str, file: str, title: str, message: str) -> str:
    where = f"file={_prop(file)}," if file else ""
    return f"::{kind} {where}title={_prop(title)}::{_data(message)}"


def _annotation(f: Finding) -> str:
    title = f"wheelfix {f.code}"
    members = f" (in {_members(f.members)})" if f.members else ""
    return _line(str(f.severity), f.wheel, title, f.message + members)


def render_github(result: CheckResult) -> str:
    lines: list[str] = []
    hints: dict[str, list[Finding]] = {}
    for f in result.findings:
        if f.code == "dlopen-unresolved":
            hints.setdefault(f.wheel, []).append(f)
        else:
            lines.append(_annotation(f))
    for wheel, found in hints.items():
        if len(found) == 1:
            lines.append(_annotation(found[0]))
            continue
        text = "\n".join(f"{f.soname} (named by {_members(f.members)})" for f in found)
        lines.append(
            _line(
                "warning",
                wheel,
                "wheelfix dlopen-unresolved",
                f"{len(found)} dlopen hints nothing provides:\n{text}",
            )
        )
    if result.target == "auto":
        for v in result.wheels:
            if v.libc is not None:
                lines.append(
                    _line(
                        "notice",
                        v.path,
                        "wheelfix consistent-with",
                        f"consistent with {v.consistent_with or 'no tag'}",
                    )
                )
    return "".join(line + "\n" for line in lines)


def render_github_problems(problems: Sequence[Problem], *, code: str = "bad-input") -> str:
    """Input that could not be checked at all: one ``::error`` per problem."""
    out = []
    for p in problems:
        message = f"{p.member}: {p.message}" if p.member else p.message
        out.append(_line("error", p.file, f"wheelfix {code}", message))
    return "".join(line + "\n" for line in out)
