"""What ``wheelfix lookup`` accepts besides a bare soname, and what it suggests for a near miss.

A query is one of:

* a library name: ``libGL.so.1``, ``libcublas.so``, ``libGL`` (a near miss: see :func:`suggestions`);
* a path: ``/usr/lib/x86_64-linux-gnu/libGL.so.1``, ``@rpath/libomp.dylib`` -> its file name;
* a pasted error line: ``ImportError: libGL.so.1: cannot open shared object file: No such file or
  directory``, ``error while loading shared libraries: libfoo.so.1: ...``, a dyld ``Library not loaded:
  @rpath/libomp.dylib`` -> the library it names.

A macOS name (``libomp.dylib``, ``libgfortran.5.dylib``) is answered through the Linux names ``wheelfix nix``
maps it to (:func:`wheelfix.render.nix.linux_names`), so the two never disagree.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass

from wheelfix.errors import BadInput, Problem
from wheelfix.nixkb.kb import Answer, KnowledgeBase, is_dev_name

__all__ = ["Query", "answer_query", "parse_query", "suggestions"]

_LOADER_ERROR = re.compile(r"(?P<name>[^\s:'\"`()]+?)\s*: cannot open shared object file")
_DYLD_ERROR = re.compile(r"Library not loaded:\s*(?P<name>\S+)")
_LIBRARY = re.compile(
    r"(?<![\w.+-])(?P<path>[@\w./+-]*?(?P<name>[\w+.-]+\.so(?:\.[0-9][\w.]*)?|[\w+.-]+\.dylib))(?![\w+-])"
)


@dataclass(frozen=True, slots=True)
class Query:
    """``text`` as given, the library ``name`` taken from it, and how (None: ``text`` is the name)."""

    text: str
    name: str
    how: str | None = None


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def parse_query(text: str) -> Query:
    """The library name in ``text``: a name, a path, or a pasted loader error. Raises :class:`BadInput`."""
    stripped = text.strip()
    if not stripped or "\x00" in stripped:
        raise BadInput([Problem(repr(text), None, "not a library name (empty, or has NUL)")])
    if not re.search(r"\s", stripped):
        if "/" not in stripped:
            return Query(text, stripped)
        name = _basename(stripped)
        if name:
            return Query(text, name, "the file name of the path")
    for pattern, how in ((_LOADER_ERROR, "the loader error"), (_DYLD_ERROR, "the dyld error")):
        m = pattern.search(stripped)
        if m is not None and _basename(m["name"]):
            return Query(text, _basename(m["name"]), how)
    m = _LIBRARY.search(stripped)
    if m is not None:
        return Query(text, m["name"], "the pasted text")
    raise BadInput([Problem(stripped[:120], None, "no library name (libfoo.so.1, libfoo.dylib) in it")])


def _darwin(kb: KnowledgeBase, name: str) -> Answer | None:
    """A ``*.dylib`` name answered as ``wheelfix nix`` does: the first of its Linux names that is known."""
    if not name.endswith(".dylib"):
        return None
    from wheelfix.render.nix import linux_names  # the same mapping `wheelfix nix` uses

    tried = linux_names(name)
    for linux in tried:
        answer = kb.lookup(linux)
        if answer.known:
            why = f"looked up as {linux} (the Linux name of this macOS library, as `wheelfix nix` maps it): "
            return dataclasses.replace(answer, soname=name, reason=why + answer.reason)
    return Answer(
        name,
        "unknown",
        None,
        (),
        (),
        f"a macOS library; none of its Linux names ({', '.join(tried)}) is known",
        kb.database_short,
    )


def suggestions(kb: KnowledgeBase, name: str, limit: int = 4) -> tuple[str, ...]:
    """Known library names close to ``name``: the same name in another case, its versions (``libGL`` ->
    ``libGL.so.1``), then close spellings of an unversioned name (``libopenblass.so`` -> ``libopenblas.so``).
    A versioned name gets no spelling guesses: its answer names the other versions already."""
    known = [*kb.table.sonames(), *(p.pattern for p in kb.preferences.rows() if not p.is_pattern)]
    stem = name.removesuffix(".so") if (is_dev_name(name) or ".so" not in name) else name
    versions = sorted(
        {s for s in known if s.startswith(stem + ".so") and s != name},
        key=lambda s: (s not in kb.preferences.exact, len(s), s),
    )
    lower = name.lower()
    cased = sorted({s for s in known if s.lower() == lower and s != name})
    near: list[str] = []
    if ".so." not in name:
        alike = [s for s in known if s[:4] == name[:4]]
        near = [s for s in difflib.get_close_matches(name, alike, n=limit, cutoff=0.85) if s != name]
    return tuple(dict.fromkeys([*cased, *versions, *near]))[:limit]


def answer_query(kb: KnowledgeBase, query: Query) -> Answer:
    """The answer for a parsed query; an unknown name gets the near misses in its reason."""
    answer = _darwin(kb, query.name) or kb.lookup(query.name)
    if answer.known or answer.alternatives or query.name.endswith(".dylib"):
        return answer  # (an ambiguous name's answer names the versions to look up already)
    near = suggestions(kb, query.name)
    if not near:
        return answer
    from wheelfix.render.nix import nix_ref

    shown = []
    for s in near:
        a = kb.lookup(s)
        shown.append(f"{s} ({nix_ref(a.chosen)})" if a.chosen else s)
    return dataclasses.replace(answer, reason=f"did you mean {', '.join(shown)}? " + answer.reason)
