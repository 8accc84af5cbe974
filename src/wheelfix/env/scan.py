"""Read every binary of an installed environment from disk, memory-mapped (never copied whole), into the
same :class:`~wheelfix.analysis.scan.WheelScan` shape a wheel's scan has, one per distribution.

Each file a RECORD lists, and each regular file no RECORD lists under the site-packages directories and the
``.pth`` directories, is opened without following symlinks, classified by its first bytes, and — an ELF or
Mach-O file — parsed from a read-only map of it. The scans carry the environment's real directories
(:class:`~wheelfix.wheel.archive.InstallTree`), so the resolver (:func:`wheelfix.analysis.resolve.analyze`)
follows ``$ORIGIN`` and absolute entries inside the environment on the real tree. Files are read by a thread
pool (reads and page faults overlap; parsing holds the GIL).
"""

from __future__ import annotations

import errno
import mmap
import os
import posixpath
import stat
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from wheelfix.analysis.resolve import analyze
from wheelfix.analysis.scan import ElfMember, MachOMember, UnsupportedBinary, WheelScan, default_jobs
from wheelfix.binfmt import MAGIC_PREFIX_LEN, BinaryFormat, BinaryFormatError, detect_format, page_out
from wheelfix.binfmt.elf.reader import parse_elf
from wheelfix.binfmt.macho.reader import parse_macho
from wheelfix.env.discover import Distribution, Installed, find_distributions, pth_dirs, unrecorded_files
from wheelfix.env.interpreter import find_interpreter
from wheelfix.env.layout import Layout, find_layout
from wheelfix.env.model import UNRECORDED, EnvAnalysis, EnvScan, FileStamp
from wheelfix.errors import Problem
from wheelfix.wheel.archive import InstallLocation, InstallTree, WheelIdentity, WheelMeta

__all__ = ["inspect_environment", "scan_environment"]

_HEAD = 64  # enough to tell ELF and Mach-O; a file starting with "MZ" gets MAGIC_PREFIX_LEN for PE
_MAX_UNRECORDED = 1_000_000  # files looked at outside RECORDs before giving up (a .pth naming a huge tree)
_BINARY = (BinaryFormat.ELF, BinaryFormat.MACHO, BinaryFormat.MACHO_FAT)

Parsed = ElfMember | MachOMember | UnsupportedBinary


@dataclass(frozen=True, slots=True)
class _Task:
    owner: int | None  # index of the distribution; None: no RECORD lists it
    member: str
    path: str  # absolute
    location: InstallLocation


@dataclass(frozen=True, slots=True)
class _Read:
    binary: Parsed | None
    stamp: FileStamp | None
    problem: Problem | None
    missing: bool = False


def _stamp(st: os.stat_result) -> FileStamp:
    return FileStamp(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode, st.st_uid, st.st_gid)


def _parse(task: _Task, fd: int, fmt: BinaryFormat, size: int) -> tuple[Parsed | None, Problem | None]:
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as data:
        try:
            if fmt is BinaryFormat.ELF:
                elf = parse_elf(data, page_out=page_out(data))  # memory does not grow with the file
                return ElfMember(task.member, task.location, size, elf), None
            return MachOMember(task.member, task.location, size, parse_macho(data)), None
        except BinaryFormatError as e:
            kind = "ELF" if fmt is BinaryFormat.ELF else "Mach-O"
            return None, Problem(task.path, None, f"malformed {kind}, not analysed: {e}")


def read_binary(task: _Task) -> _Read:
    """Classify one file by its first bytes and parse it if it is an ELF or Mach-O file."""
    try:
        fd = os.open(task.path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return _Read(None, None, None, missing=True)
    except OSError as e:
        if e.errno == errno.ELOOP:  # a symlink: not followed (a file it names is scanned under its own name)
            return _Read(None, None, None)
        return _Read(None, None, Problem(task.path, None, f"cannot open: {e.strerror} (not analysed)"))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            return _Read(None, None, None)
        head = os.pread(fd, _HEAD, 0)
        if head[:2] == b"MZ":
            head = os.pread(fd, MAGIC_PREFIX_LEN, 0)
        fmt = detect_format(head)
        if fmt is None:
            return _Read(None, None, None)
        if fmt not in _BINARY:
            return _Read(UnsupportedBinary(task.member, fmt), _stamp(st), None)
        binary, problem = _parse(task, fd, fmt, st.st_size)
        return _Read(binary, _stamp(st), problem)
    except OSError as e:
        return _Read(None, None, Problem(task.path, None, f"cannot read: {e.strerror} (not analysed)"))
    finally:
        os.close(fd)


def _tree(layout: Layout, site: str, extra: Sequence[str]) -> InstallTree:
    prefix = layout.prefix
    return InstallTree(
        prefix=prefix,
        schemes=(
            ("purelib", site),
            ("platlib", site),
            ("scripts", layout.scripts),
            ("data", prefix),
            ("headers", posixpath.join(prefix, "include")),
        ),
        real=True,
        roots=(*layout.site_packages, *extra),
    )


def _meta(d: Distribution | None) -> WheelMeta:
    if d is None:
        return WheelMeta(UNRECORDED, "unrecorded-files", "", (), (), False, "", "")
    return WheelMeta(
        filename=d.dist_info_name,
        name=d.name,
        version=d.version,
        tags=tuple(sorted(set(d.tags))),
        wheel_tags=d.tags,
        root_is_purelib=d.root_is_purelib,
        dist_info=d.dist_info_name,
        data_dir=d.dist_info_name[: -len(".dist-info")] + ".data",
    )


def _tasks(layout: Layout, installed: Installed, warnings: list[Problem]) -> list[_Task]:
    tasks: list[_Task] = []
    for i, d in enumerate(installed.distributions):
        for e in d.record:
            path = d.path_of(e.path)
            if path != d.dist_info and not path.startswith(d.dist_info + "/"):  # metadata holds no binary
                tasks.append(_Task(i, e.path, path, InstallLocation("platlib", e.path)))
    base = layout.site_packages[0] if layout.site_packages else layout.prefix
    for n, (_root, path) in enumerate(unrecorded_files(layout, installed)):
        if n >= _MAX_UNRECORDED:
            warnings.append(
                Problem(layout.given, None, f"stopped looking after {n} files that no RECORD lists")
            )
            break
        rel = posixpath.relpath(path, base)
        member = rel if not rel.startswith("../") else path
        tasks.append(_Task(None, member, path, InstallLocation("platlib", rel)))
    return tasks


def _scan_of(
    d: Distribution | None, tree: InstallTree, found: list[Parsed], warnings: Sequence[Problem]
) -> WheelScan:
    found.sort(key=lambda b: b.member)
    if d is None:
        identity = WheelIdentity(0, 0, "")
        path, count, size = tree.dir("platlib"), len(found), 0
    else:
        identity = WheelIdentity(d.record_stat[0], d.record_stat[1], d.record_sha256)
        path, count, size = d.dist_info, len(d.record), sum(e.size or 0 for e in d.record)
    return WheelScan(
        path=path,
        meta=_meta(d),
        file_size=0,
        member_count=count,
        uncompressed_size=size,
        elf=tuple(b for b in found if isinstance(b, ElfMember)),
        macho=tuple(b for b in found if isinstance(b, MachOMember)),
        unsupported=tuple(b for b in found if isinstance(b, UnsupportedBinary)),
        identity=identity,
        warnings=tuple(warnings),
        manifest=d.manifest if d is not None else None,
        tree=tree,
    )


def _missing_warnings(installed: Installed, missing: dict[int, list[str]]) -> dict[int, list[Problem]]:
    out: dict[int, list[Problem]] = {}
    for i, paths in missing.items():
        d = installed.distributions[i]
        shown = ", ".join(paths[:3]) + (f", +{len(paths) - 3} more" if len(paths) > 3 else "")
        out[i] = [Problem(d.dist_info, "RECORD", f"lists {len(paths)} files that are not there: {shown}")]
    return out


def scan_environment(path: Path | str, *, jobs: int | None = None) -> EnvScan:
    """Find and read everything of the environment at ``path`` (a venv, site-packages or prefix);
    :class:`~wheelfix.errors.BadInput` when it is none of them. A binary that cannot be read or parsed is a
    warning (it is not analysed): one odd file in a test-data directory does not stop the report."""
    layout = find_layout(Path(path))
    interpreter = find_interpreter(layout)
    installed = find_distributions(layout)
    extra = pth_dirs(layout)
    warnings = list(installed.problems)
    tasks = _tasks(layout, installed, warnings)
    workers = jobs or default_jobs()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wheelfix-env") as pool:
        reads = list(pool.map(read_binary, tasks, chunksize=64))
    warnings.extend(r.problem for r in reads if r.problem is not None)
    found: dict[int | None, list[Parsed]] = {}
    missing: dict[int, list[str]] = {}
    stamps: dict[str, FileStamp] = {}
    for task, r in zip(tasks, reads, strict=True):
        if r.missing and task.owner is not None:
            missing.setdefault(task.owner, []).append(task.member)
        if r.binary is not None and r.stamp is not None:
            found.setdefault(task.owner, []).append(r.binary)
            stamps[task.path] = r.stamp
    more = _missing_warnings(installed, missing)
    scans: list[WheelScan] = []
    owners: list[Distribution | None] = []
    # a distribution whose only binaries are Windows ones (pip's and setuptools' launchers) is left out
    found = {k: v for k, v in found.items() if any(not isinstance(b, UnsupportedBinary) for b in v)}
    for i, d in enumerate(installed.distributions):
        if i in found:
            scans.append(_scan_of(d, _tree(layout, d.site, extra), found[i], [*d.warnings, *more.get(i, [])]))
            owners.append(d)
    if None in found:
        base = layout.site_packages[0] if layout.site_packages else layout.prefix
        scans.append(_scan_of(None, _tree(layout, base, extra), found[None], ()))
        owners.append(None)
    for i, d in enumerate(installed.distributions):  # pure distributions' warnings are not lost
        if i not in found:
            warnings.extend([*d.warnings, *more.get(i, [])])
    version = layout.python_version or (interpreter.version if interpreter else None) or "3"
    return EnvScan(
        layout=layout,
        interpreter=interpreter,
        distributions=installed.distributions,
        scans=tuple(scans),
        owners=tuple(owners),
        stamps=stamps,
        pth_dirs=tuple(extra),
        python_version=".".join(version.split(".")[:2]),
        warnings=tuple(warnings),
    )


def inspect_environment(path: Path | str, *, jobs: int | None = None) -> EnvAnalysis:
    """Scan the environment at ``path`` and resolve every need of its binaries on its real tree."""
    scan = scan_environment(path, jobs=jobs)
    return EnvAnalysis(scan, analyze(scan.scans, python_version=scan.python_version))
