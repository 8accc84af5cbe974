"""Resolve every need of every binary in a set of wheels, following ld.so's rules.

The wheels are laid out in one virtual install tree (a venv: ``<prefix>/lib/pythonX.Y/site-packages``,
``<prefix>/bin``, ...; see :func:`wheelfix.wheel.archive.virtual_dir`). For a binary, ld.so searches
  1. DT_RPATH of the binary, then of its loaders up the chain — only when the binary has no DT_RUNPATH;
  2. DT_RUNPATH of the binary itself (never inherited);
  3. the cache and default dirs — which are the host's, so they are not consulted: a need that only they
     could satisfy is classified (glibc, GPU driver, libpython, manylinux policy) or unresolved.
``$ORIGIN`` expands to the binary's own directory in the virtual tree. A file is a candidate only if its
ELF class and machine match. A soname present in the set but not on the search path still loads when
some earlier object loaded it; it is reported as bundled/other_wheel with ``reachable=False``.

Loaders are approximated by every binary of the set that needs a binary (ld.so uses the first one).

An installed environment (:mod:`wheelfix.env`) is resolved by the same rules over its *real* tree: each
scan's :class:`~wheelfix.wheel.archive.InstallTree` gives its directories, ``$ORIGIN`` is the binary's real
directory, and an absolute entry is searched when it lies inside the environment (its prefix, or a directory
an editable install adds); the host's library directories are never searched, as on NixOS.

Mach-O members follow dyld's rules, per architecture slice (a candidate must have a slice of the same arch):
  * ``@loader_path/x``: the binary's own directory in the virtual tree;
  * ``@executable_path/x``: the directory of the main executable — for an extension module that is the
    Python interpreter's, unknown here, so the need is unresolved with a note saying so (for a Mach-O
    executable of the wheel it is its own directory);
  * ``@rpath/x``: each LC_RPATH of the binary (its @loader_path is the binary's dir), then those of its
    loaders up the chain (each expanded with the loader's own directory);
  * ``/usr/lib/*``, ``/System/Library/*``: ``macos_system`` (in every macOS install / the dyld cache);
  * other absolute paths: a file of the wheel set at that path, else unresolved; a path under
    ``/opt/homebrew``, ``/usr/local``, ``/opt/local``, ``/Users`` (...) is flagged as leaking the build
    machine.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from wheelfix.analysis.model import (
    Analysis,
    ArchView,
    BinaryKind,
    ElfAnalysis,
    MachOAnalysis,
    Need,
    Outcome,
    Resolution,
    SearchDir,
    SearchKind,
    Source,
    WheelAnalysis,
)
from wheelfix.analysis.policy import is_glibc, is_gpu_driver, is_libpython, manylinux_allowlist
from wheelfix.analysis.scan import ElfMember, MachOMember, WheelScan
from wheelfix.binfmt.macho.reader import MachOSlice
from wheelfix.wheel.archive import InstallTree
from wheelfix.wheel.manifest import RepairManifest

__all__ = ["BUILD_MACHINE_PREFIXES", "NIX_STORE", "analyze", "elf_kind", "macho_kind"]

_EXTENSION = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.(cpython|pypy|graalpy)[^./]*|\.abi3|\.cp3\d+[^./]*)?\.so")
_ORIGIN = re.compile(r"\$(ORIGIN\b|\{ORIGIN\})")
_OTHER_TOKEN = re.compile(r"\$(\{?)(LIB|PLATFORM)\b")
NIX_STORE = "/nix/store/"


def _is_extension(path: str) -> bool:
    name = posixpath.basename(path)
    return _EXTENSION.fullmatch(name) is not None and not name.startswith("lib")


def elf_kind(binary: ElfMember) -> BinaryKind:
    elf = binary.elf
    if elf.type == "ET_REL":
        return BinaryKind.OBJECT
    if elf.interpreter is not None or elf.type == "ET_EXEC":
        return BinaryKind.EXECUTABLE
    return BinaryKind.EXTENSION if _is_extension(binary.location.path) else BinaryKind.LIBRARY


def macho_kind(binary: MachOMember) -> BinaryKind:
    filetype = binary.macho.slices[0].filetype if binary.macho.slices else ""
    if filetype == "object":
        return BinaryKind.OBJECT
    if filetype == "execute":
        return BinaryKind.EXECUTABLE
    if filetype == "bundle" or _is_extension(binary.location.path):
        return BinaryKind.EXTENSION
    return BinaryKind.LIBRARY


# --- the load chain (both formats) -----------------------------------------------------------------------


@dataclass(slots=True)
class _Chain:
    """Search paths of a set of binaries while the inheritance along the load chain is worked out.

    ``own[i]``: the entries binary ``i`` searches and passes on to what it loads (ELF DT_RPATH, Mach-O
    LC_RPATH); ``fixed[i]``: entries searched *instead*, neither passed on nor added to (ELF DT_RUNPATH);
    ``inherited[i]``: what its loaders pass on to it."""

    own: list[list[SearchDir]]
    fixed: list[list[SearchDir] | None]
    inherited: list[list[SearchDir]]

    def search_path(self, i: int) -> list[SearchDir]:
        fixed = self.fixed[i]
        return fixed if fixed is not None else self.own[i] + self.inherited[i]


def _propagate(
    chain: _Chain,
    loads: Callable[[int, list[SearchDir]], Iterable[int]],
    members: Sequence[str],
    order: Callable[[int], tuple[str, ...]],
) -> None:
    """Fixed point: search paths flow from each binary to the binaries it loads (``loads(i, dirs)``: the
    indices binary ``i`` loads through ``dirs``), in loader order, each directory once. ld.so (DT_RPATH) and
    dyld (LC_RPATH) both search the entries of the loaders up the chain after the binary's own."""
    n = len(members)
    for _ in range(n + 1):
        loaded_by: list[list[int]] = [[] for _ in range(n)]
        for i in range(n):
            for j in loads(i, chain.search_path(i)):
                if j != i:
                    loaded_by[j].append(i)
        changed = False
        for j in range(n):
            if chain.fixed[j] is not None:
                continue
            new: list[SearchDir] = []
            seen = {d.path for d in chain.own[j]}
            for i in sorted(loaded_by[j], key=order):
                for d in chain.own[i] + chain.inherited[i]:
                    if d.path is not None and d.path not in seen:
                        seen.add(d.path)
                        new.append(d.inherited(members[i]))
            if [d.path for d in new] != [d.path for d in chain.inherited[j]]:
                chain.inherited[j] = new
                changed = True
        if not changed:
            return


def _python_version(scans: Sequence[WheelScan]) -> str:
    versions = sorted({v for s in scans if (v := s.meta.python_version)})
    return versions[0] if versions else "3"


def analyze(scans: Sequence[WheelScan], *, python_version: str | None = None) -> Analysis:
    """Resolve every binary of every wheel against the whole set. ``python_version``: the X.Y of the
    environment (an installed one knows it; for wheels it comes from their tags)."""
    pyver = python_version or _python_version(scans)
    elf = _analyze_elf(scans, pyver)
    macho = _analyze_macho(scans, pyver)
    return Analysis(
        wheels=tuple(
            WheelAnalysis(s, tuple(es), tuple(ms)) for s, es, ms in zip(scans, elf, macho, strict=True)
        ),
        python_version=pyver,
    )


def _store_dirs(dirs: Sequence[SearchDir]) -> list[str]:
    out: list[str] = []
    for d in dirs:
        if d.entry.startswith(NIX_STORE) and d.entry not in out:
            out.append(d.entry)
    return out


def _in_store(where: str) -> Resolution:
    return Resolution(
        Outcome.NIX_STORE,
        f"expected in {where}: pinned by a repair; not looked up on this host "
        "(no repair manifest: taken at the binary's word)",
    )


@dataclass(frozen=True, slots=True)
class _Pin:
    """What a repair manifest says of one need of one binary slice."""

    resolution: Resolution | None  # the need is pinned to a store directory the repair chose
    note: str  # else: why not, appended to the need's ordinary classification


def _pinned(
    manifest: RepairManifest | None, member: str, arch: str, name: str, store: Sequence[str], where: str
) -> _Pin:
    """A need of a binary that names store directories (``store``): pinned to one of them only when the
    repair manifest says the repair chose it for this need; without a manifest, taken at the binary's word."""
    if manifest is None or not manifest.covers(member):
        return _Pin(_in_store(where), "")
    chosen = manifest.provider(member, arch, name)
    if chosen is not None and (chosen in store or name.startswith(chosen.rstrip("/") + "/")):
        return _Pin(
            Resolution(Outcome.NIX_STORE, f"in {chosen}, where the repair pointed it (repair manifest)"), ""
        )
    if manifest.allowed(member, arch, name):
        return _Pin(None, " (left unresolved with --allow when the wheel was repaired)")
    return _Pin(None, " (the repair manifest names no store directory for it)")


# --- ELF (ld.so) ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Node:
    wheel_index: int
    wheel: str  # file name
    binary: ElfMember
    abspath: str  # in the install tree (virtual for a wheel, real for an installed distribution)
    tree: InstallTree

    @property
    def origin(self) -> str:
        return posixpath.dirname(self.abspath)


def _node_key(n: _Node) -> tuple[str, str]:
    return (n.wheel, n.binary.member)


def _outside(tree: InstallTree) -> str:
    return "absolute path outside the environment" if tree.real else "absolute path outside the wheels"


def _expand(kind: SearchKind, entry: str, origin: str, tree: InstallTree) -> SearchDir:
    if entry == "":
        return SearchDir(kind, entry, None, "empty entry means the current directory")
    if _OTHER_TOKEN.search(entry):
        return SearchDir(kind, entry, None, "$LIB/$PLATFORM depend on the host")
    has_origin = _ORIGIN.search(entry) is not None
    path = _ORIGIN.sub(lambda _m: origin, entry)
    if not path.startswith("/"):
        return SearchDir(kind, entry, None, "relative to the current directory")
    path = posixpath.normpath(path)
    if not tree.contains(path):
        if not has_origin:
            return SearchDir(kind, entry, None, _outside(tree) + " (not searched)")
        return SearchDir(kind, entry, None, "leaves the install prefix")
    return SearchDir(kind, entry, path, None)


def _own_dirs(node: _Node, kind: SearchKind, value: str | None) -> list[SearchDir]:
    if value is None:
        return []
    return [_expand(kind, e, node.origin, node.tree) for e in value.split(":")]


class _Resolver:
    def __init__(self, scans: Sequence[WheelScan], pyver: str) -> None:
        self.nodes: list[_Node] = []
        for i, scan in enumerate(scans):
            tree = scan.install_tree(pyver)
            for b in scan.elf:
                self.nodes.append(_Node(i, scan.meta.filename, b, tree.path(b.location), tree))
        self.by_dir: dict[str, dict[str, list[_Node]]] = {}
        self.by_soname: dict[str, list[_Node]] = {}
        # sorted, so that which of two conflicting files wins does not depend on the order of the inputs
        for n in sorted(self.nodes, key=_node_key):
            d, f = posixpath.split(n.abspath)
            self.by_dir.setdefault(d, {}).setdefault(f, []).append(n)
            for key in {f, n.binary.elf.soname}:
                if key:
                    self.by_soname.setdefault(key, []).append(n)
        self.allowlist = manylinux_allowlist()
        self.manifests = [s.manifest for s in scans]

    @staticmethod
    def _compatible(a: _Node, b: _Node) -> bool:
        ea, eb = a.binary.elf, b.binary.elf
        return ea.elf_class == eb.elf_class and ea.machine == eb.machine and ea.endian == eb.endian

    def _found(self, node: _Node, cand: _Node, via: str | None, reachable: bool) -> Resolution:
        same = cand.wheel_index == node.wheel_index
        if reachable:
            detail = f"found through {via}"
        else:
            detail = (
                "present in the wheel set but not on this binary's search path; "
                "it loads only if another object loaded it first"
            )
        return Resolution(
            outcome=Outcome.BUNDLED if same else Outcome.OTHER_WHEEL,
            detail=detail,
            wheel=cand.wheel,
            member=cand.binary.member,
            via=via,
            reachable=reachable,
        )

    def search(self, node: _Node, name: str, dirs: Sequence[SearchDir]) -> tuple[Resolution, _Node | None]:
        if "/" in name:
            if name.startswith("/"):
                parent, base = posixpath.split(posixpath.normpath(name))
                for cand in self.by_dir.get(parent, {}).get(base, []):
                    if self._compatible(node, cand):
                        return self._found(node, cand, "an absolute path", True), cand
                if name.startswith(NIX_STORE):
                    pin = _pinned(
                        self.manifests[node.wheel_index],
                        node.binary.member,
                        node.binary.elf.machine,
                        name,
                        [parent],
                        f"the absolute path {name}",
                    )
                    if pin.resolution is not None:
                        return pin.resolution, None
                    return Resolution(Outcome.UNRESOLVED, f"absolute path in the store{pin.note}"), None
                return Resolution(Outcome.UNRESOLVED, _outside(node.tree)), None
            return Resolution(Outcome.UNRESOLVED, "path relative to the current directory"), None
        for d in dirs:
            if d.path is None:
                continue
            for cand in self.by_dir.get(d.path, {}).get(name, []):
                if self._compatible(node, cand):
                    return self._found(node, cand, f"{d.label} {d.entry}", True), cand
        return self._classify(node, name, dirs), None

    def _classify(self, node: _Node, name: str, dirs: Sequence[SearchDir] = ()) -> Resolution:
        known = _host_provided(name)
        if known is not None:
            return known
        note = ""
        store = _store_dirs(dirs)
        if store:  # a repaired binary: ld.so will look in these before the system's directories
            pin = _pinned(
                self.manifests[node.wheel_index],
                node.binary.member,
                node.binary.elf.machine,
                name,
                store,
                f"its search path's store directories ({', '.join(store)})",
            )
            if pin.resolution is not None:
                return pin.resolution
            note = pin.note
        present = [c for c in self.by_soname.get(name, []) if self._compatible(node, c)]
        if present:
            present.sort(key=lambda c: (c.wheel_index != node.wheel_index, _node_key(c)))
            return self._found(node, present[0], None, False)
        if name in self.allowlist:
            return Resolution(
                Outcome.MANYLINUX,
                "allowed by the manylinux policy (expected on the system; absent on Nix)" + note,
            )
        return Resolution(Outcome.UNRESOLVED, "not in the wheels and not a system library" + note)


def _host_provided(name: str) -> Resolution | None:
    """glibc, the GPU driver and libpython: on every host that runs the binary, never looked up."""
    if is_glibc(name):
        return Resolution(Outcome.GLIBC, "part of glibc")
    if is_gpu_driver(name):
        return Resolution(Outcome.GPU_DRIVER, "comes with the GPU driver (on NixOS: /run/opengl-driver/lib)")
    if is_libpython(name):
        return Resolution(Outcome.PYTHON, "the interpreter's libpython, already loaded by a shared Python")
    return None


def _elf_needs(r: _Resolver, n: _Node, dirs: Sequence[SearchDir]) -> tuple[Need, ...]:
    """DT_NEEDED first, then the names of dlopen notes, then dlopen strings (each name once)."""
    elf = n.binary.elf
    needs = [Need(name, Source.NEEDED, r.search(n, name, dirs)[0], True) for name in elf.needed]
    noted: set[str] = set(elf.needed)
    for note in elf.dlopen_notes:
        for name in note.sonames:
            if name not in noted:
                noted.add(name)
                res = r.search(n, name, dirs)[0]
                needs.append(Need(name, Source.DLOPEN_NOTE, res, note.priority == "required"))
    for name in elf.dlopen_candidates:
        if name not in noted:
            needs.append(Need(name, Source.DLOPEN_STRING, r.search(n, name, dirs)[0], False))
    return tuple(needs)


def _analyze_elf(scans: Sequence[WheelScan], pyver: str) -> list[list[ElfAnalysis]]:
    r = _Resolver(scans, pyver)
    nodes = r.nodes
    index = {id(n): i for i, n in enumerate(nodes)}
    chain = _Chain(
        own=[
            [] if n.binary.elf.runpath is not None else _own_dirs(n, SearchKind.RPATH, n.binary.elf.rpath)
            for n in nodes
        ],
        fixed=[
            _own_dirs(n, SearchKind.RUNPATH, n.binary.elf.runpath)
            if n.binary.elf.runpath is not None
            else None
            for n in nodes
        ],
        inherited=[[] for _ in nodes],
    )

    def loads(i: int, dirs: list[SearchDir]) -> Iterable[int]:
        for name in nodes[i].binary.elf.needed:
            cand = r.search(nodes[i], name, dirs)[1]
            if cand is not None:
                yield index[id(cand)]

    _propagate(chain, loads, [n.binary.member for n in nodes], lambda i: _node_key(nodes[i]))
    out: list[list[ElfAnalysis]] = [[] for _ in scans]
    for i, n in enumerate(nodes):
        dirs = chain.search_path(i)
        out[n.wheel_index].append(
            ElfAnalysis(n.binary, elf_kind(n.binary), tuple(dirs), _elf_needs(r, n, dirs))
        )
    return out


# --- Mach-O (dyld) ---------------------------------------------------------------------------------------

_MACOS_SYSTEM = ("/usr/lib/", "/System/Library/")
BUILD_MACHINE_PREFIXES = (
    "/opt/homebrew/",
    "/usr/local/",
    "/opt/local/",
    "/Users/",
    "/private/",
    "/tmp/",
    "/sw/",
)
_PYTHON_FRAMEWORK = re.compile(r"(^|/)Python(3)?\.framework/|(^|/)libpython\d[\d.]*(m|d|t)*\.dylib$")


@dataclass(frozen=True, slots=True)
class _MNode:
    wheel_index: int
    wheel: str
    binary: MachOMember
    sl: MachOSlice
    abspath: str
    tree: InstallTree

    @property
    def origin(self) -> str:
        return posixpath.dirname(self.abspath)

    @property
    def is_executable(self) -> bool:
        return self.sl.filetype == "execute"


def _expand_rpath(kind: SearchKind, entry: str, node: _MNode) -> SearchDir:
    if entry.startswith("@loader_path") or (node.is_executable and entry.startswith("@executable_path")):
        rest = entry.partition("/")[2]
        path = posixpath.normpath(posixpath.join(node.origin, rest))
        if not node.tree.contains(path):
            return SearchDir(kind, entry, None, "leaves the install prefix")
        return SearchDir(kind, entry, path, None)
    if entry.startswith("@executable_path"):
        return SearchDir(kind, entry, None, "@executable_path is the interpreter's directory: unknown here")
    if entry.startswith("@"):
        return SearchDir(kind, entry, None, "unknown @ token")
    if not entry.startswith("/"):
        return SearchDir(kind, entry, None, "relative to the current directory")
    if node.tree.contains(posixpath.normpath(entry)):  # an installed environment's own directory
        return SearchDir(kind, entry, posixpath.normpath(entry), None)
    if entry.startswith(BUILD_MACHINE_PREFIXES):
        return SearchDir(kind, entry, None, "absolute path on the build machine (not searched)")
    return SearchDir(kind, entry, None, _outside(node.tree) + " (not searched)")


class _MachOResolver:
    def __init__(self, scans: Sequence[WheelScan], pyver: str) -> None:
        self.nodes: list[_MNode] = []
        for i, scan in enumerate(scans):
            tree = scan.install_tree(pyver)
            for m in scan.macho:
                path = tree.path(m.location)
                for sl in m.macho.slices:
                    self.nodes.append(_MNode(i, scan.meta.filename, m, sl, path, tree))
        self.by_path: dict[str, list[_MNode]] = {}
        self.by_name: dict[str, list[_MNode]] = {}
        self.manifests = [s.manifest for s in scans]
        for n in sorted(self.nodes, key=lambda n: (n.wheel, n.binary.member, n.sl.arch)):
            self.by_path.setdefault(n.abspath, []).append(n)
            self.by_name.setdefault(posixpath.basename(n.abspath), []).append(n)
            if n.sl.id_dylib is not None:
                self.by_name.setdefault(posixpath.basename(n.sl.id_dylib.name), []).append(n)

    def _pin(self, node: _MNode, name: str, store: Sequence[str], where: str) -> _Pin:
        return _pinned(self.manifests[node.wheel_index], node.binary.member, node.sl.arch, name, store, where)

    def _at(self, node: _MNode, path: str) -> _MNode | None:
        for cand in self.by_path.get(posixpath.normpath(path), []):
            if cand.sl.arch == node.sl.arch:
                return cand
        return None

    def _found(self, node: _MNode, cand: _MNode, via: str | None, reachable: bool) -> Resolution:
        if reachable:
            detail = f"found through {via}"
        else:
            detail = (
                "present in the wheel set but not where dyld looks; "
                "it loads only if an image with the same install name was loaded first"
            )
        return Resolution(
            outcome=Outcome.BUNDLED if cand.wheel_index == node.wheel_index else Outcome.OTHER_WHEEL,
            detail=detail,
            wheel=cand.wheel,
            member=cand.binary.member,
            via=via,
            reachable=reachable,
        )

    def _unreachable(self, node: _MNode, name: str, detail: str) -> Resolution:
        base = posixpath.basename(name)
        present = [c for c in self.by_name.get(base, []) if c.sl.arch == node.sl.arch and c is not node]
        if present and not name.startswith(_MACOS_SYSTEM):
            present.sort(key=lambda c: (c.wheel_index != node.wheel_index, c.wheel, c.binary.member))
            res = self._found(node, present[0], None, False)
            return Resolution(res.outcome, f"{detail}; {res.detail}", res.wheel, res.member, None, False)
        return Resolution(Outcome.UNRESOLVED, detail)

    def search(self, node: _MNode, name: str, dirs: Sequence[SearchDir]) -> tuple[Resolution, _MNode | None]:
        if name.startswith("@rpath/"):
            rest = name[len("@rpath/") :]
            for d in dirs:
                if d.path is None:
                    continue
                cand = self._at(node, posixpath.join(d.path, rest))
                if cand is not None:
                    return self._found(node, cand, f"{d.label} {d.entry}", True), cand
            if _PYTHON_FRAMEWORK.search(name):
                return Resolution(Outcome.PYTHON, "the interpreter's Python framework / libpython"), None
            store = _store_dirs(dirs)
            note = ""
            if store:
                pin = self._pin(
                    node, name, store, f"the store directories of its LC_RPATHs ({', '.join(store)})"
                )
                if pin.resolution is not None:
                    return pin.resolution, None
                note = pin.note
            return self._unreachable(node, name, "not found through any LC_RPATH" + note), None
        if name.startswith("@loader_path/") or (node.is_executable and name.startswith("@executable_path/")):
            path = posixpath.normpath(posixpath.join(node.origin, name.partition("/")[2]))
            cand = self._at(node, path)
            if cand is not None:
                return self._found(node, cand, name.partition("/")[0], True), cand
            return self._unreachable(node, name, "no such file next to the binary"), None
        if name.startswith("@executable_path/"):
            return (
                self._unreachable(
                    node,
                    name,
                    "@executable_path is the directory of the program (the Python interpreter for an "
                    "extension module): unknown here",
                ),
                None,
            )
        if name.startswith("@"):
            return self._unreachable(node, name, "unknown @ token"), None
        if name.startswith(_MACOS_SYSTEM):
            return Resolution(Outcome.MACOS_SYSTEM, "part of macOS"), None
        if _PYTHON_FRAMEWORK.search(name):
            return Resolution(Outcome.PYTHON, "the interpreter's Python framework / libpython"), None
        if name.startswith("/"):
            cand = self._at(node, name)
            if cand is not None:
                return self._found(node, cand, "an absolute path", True), cand
            if name.startswith(NIX_STORE):
                pin = self._pin(node, name, [posixpath.dirname(name)], f"the absolute path {name}")
                if pin.resolution is not None:
                    return pin.resolution, None
                return self._unreachable(node, name, "absolute path in the store" + pin.note), None
            if name.startswith(BUILD_MACHINE_PREFIXES):
                detail = "absolute path on the build machine (leaked install name; absent on other hosts)"
            else:
                detail = _outside(node.tree)
            return self._unreachable(node, name, detail), None
        return self._unreachable(
            node, name, "relative install name: dyld looks in the current directory"
        ), None


def _analyze_macho(scans: Sequence[WheelScan], pyver: str) -> list[list[MachOAnalysis]]:
    r = _MachOResolver(scans, pyver)
    nodes = r.nodes
    index = {id(n): i for i, n in enumerate(nodes)}
    chain = _Chain(
        own=[[_expand_rpath(SearchKind.LC_RPATH, e, n) for e in n.sl.rpaths] for n in nodes],
        fixed=[None for _ in nodes],
        inherited=[[] for _ in nodes],
    )

    def loads(i: int, dirs: list[SearchDir]) -> Iterable[int]:
        for dylib in nodes[i].sl.dylibs:
            cand = r.search(nodes[i], dylib.name, dirs)[1]
            if cand is not None:
                yield index[id(cand)]

    _propagate(
        chain, loads, [n.binary.member for n in nodes], lambda i: (nodes[i].wheel, nodes[i].binary.member)
    )
    views: dict[tuple[int, str], list[ArchView]] = {}
    members: dict[tuple[int, str], MachOMember] = {}
    for i, n in enumerate(nodes):
        dirs = chain.search_path(i)
        needs = tuple(
            Need(d.name, Source.NEEDED, r.search(n, d.name, dirs)[0], d.kind != "LC_LOAD_WEAK_DYLIB")
            for d in n.sl.dylibs
        )
        key = (n.wheel_index, n.binary.member)
        members[key] = n.binary
        views.setdefault(key, []).append(ArchView(n.sl.arch, n.sl.filetype, n.sl.minos, tuple(dirs), needs))
    out: list[list[MachOAnalysis]] = [[] for _ in scans]
    for (wi, member), archs in views.items():
        m = members[(wi, member)]
        out[wi].append(MachOAnalysis(m, macho_kind(m), tuple(archs)))
    return out
