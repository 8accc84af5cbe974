"""Repair an installed environment in place: plan everything, check everything, then rename.

For every binary a plan edits (:func:`wheelfix.repair.plan.plan_repair` over the environment's analysis):

1. the file is opened without following symlinks and must still be the file that was scanned (device,
   inode, size, mtime);
2. it is copied (``copy_file_range``: in the kernel, never through memory) to a temp file in the same
   directory, edited there in place and re-read to check the edit (ELF: :func:`patch_elf_fd`; Mach-O:
   :func:`patch_macho_bytes`, re-signed ad hoc), then given the original's mode and owner and fsynced;
3. each changed distribution's repair manifest (``<dist-info>/wheelfix.json``, merged into an earlier
   one) and RECORD (the changed files' hash and size, the manifest's row) are staged the same way, RECORD
   only if it is still the one that was read.

Only when every temp file is ready is each renamed over its original (binaries first, then manifests and
RECORDs). A rename gives the file a new inode: a process that has the old file mapped keeps it, and a file
hard-linked from a cache (``uv`` links installed files to its cache) is not changed through the link. Any
failure before the renames removes every temp file and leaves the environment as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wheelfix.env.discover import Distribution
from wheelfix.env.model import EnvAnalysis, FileStamp
from wheelfix.env.record import record_hash, rewrite_record, sha256_row
from wheelfix.errors import BadInput, OutputError, Problem, UsageError
from wheelfix.repair.patch import patch_elf_fd, patch_macho_bytes
from wheelfix.repair.plan import ElfEdit, MachOEdit, WheelPlan
from wheelfix.wheel.atomic import copy_range
from wheelfix.wheel.manifest import MANIFEST_NAME

__all__ = ["ChangedFile", "InPlaceResult", "refuse_store", "repair_in_place"]

NIX_STORE = "/nix/store/"


@dataclass(frozen=True, slots=True)
class ChangedFile:
    path: str  # absolute
    member: str  # its RECORD path (or path, for a file no RECORD lists)
    distribution: str | None  # the .dist-info name; None for a file no RECORD lists
    size_before: int
    size_after: int
    sha256_after: str  # hex
    matched_record: bool | None  # the file matched its RECORD hash before the repair (None: no hash)


@dataclass(frozen=True, slots=True)
class InPlaceResult:
    """What an in-place repair changed (nothing for a dry run or a second run)."""

    plans: tuple[WheelPlan, ...]
    changed: tuple[ChangedFile, ...]
    metadata: tuple[str, ...]  # RECORD and wheelfix.json files written
    dry_run: bool

    @property
    def changes(self) -> bool:
        return bool(self.changed)


@dataclass(slots=True)
class _Staged:
    path: str  # the file to replace
    tmp: str  # the temp file that replaces it
    stamp: FileStamp | None  # the original must still match this (None: a new file or metadata)
    record_stat: tuple[int, int, int] | None = None  # a RECORD must still have this (size, mtime, inode)


@dataclass(slots=True)
class _Stage:
    binaries: list[_Staged] = field(default_factory=list)
    metadata: list[_Staged] = field(default_factory=list)

    def discard(self) -> None:
        for s in (*self.binaries, *self.metadata):
            with contextlib.suppress(OSError):
                os.unlink(s.tmp)


def refuse_store(env: EnvAnalysis) -> None:
    """An environment in ``/nix/store`` is read-only by design: refuse it (and any binary there)."""
    prefix = os.path.realpath(env.layout.prefix)
    if prefix.startswith(NIX_STORE) or prefix == NIX_STORE.rstrip("/"):
        raise UsageError(
            f"{env.layout.given} is in /nix/store ({prefix}), which is read-only by design: repair the "
            "wheels in its build (wheelfixHook, or `wheelfix nix` for a fragment), not the result"
        )
    in_store = sorted(p for p in env.scan.stamps if os.path.realpath(p).startswith(NIX_STORE))
    if in_store:
        raise UsageError(
            f"{len(in_store)} binaries of {env.layout.given} are in /nix/store (read-only), "
            f"e.g. {in_store[0]}"
        )


def _same(st: os.stat_result, stamp: FileStamp) -> bool:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == (
        stamp.dev,
        stamp.ino,
        stamp.size,
        stamp.mtime_ns,
    )


def _changed(path: str) -> BadInput:
    return BadInput([Problem(path, None, "changed since it was inspected; run the repair again")])


def _copy(src: int, dst: int, size: int) -> None:
    if copy_range(src, dst, size) != size:
        raise OSError("file shrank while being copied")


def _sha256(fd: int) -> bytes:
    """Read in pieces, not mapped: a map of a big library would count whole in the process's memory."""
    sha = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, 4 << 20, offset):
        sha.update(chunk)
        offset += len(chunk)
    return sha.digest()


def _finish(fd: int, stamp: FileStamp) -> None:
    os.fchmod(fd, stamp.mode & 0o7777)
    if os.geteuid() == 0 and (stamp.uid, stamp.gid) != (0, 0):
        with contextlib.suppress(OSError):  # root repairing someone's venv: the file stays theirs
            os.fchown(fd, stamp.uid, stamp.gid)
            os.fchmod(fd, stamp.mode & 0o7777)  # chown clears setuid bits; none expected, kept anyway
    os.fsync(fd)


def _temp(path: str) -> tuple[int, str]:
    try:
        return tempfile.mkstemp(
            prefix="." + posixpath.basename(path) + ".", suffix=".wheelfix", dir=posixpath.dirname(path)
        )
    except OSError as e:
        raise OutputError(f"{posixpath.dirname(path)}: cannot write: {e.strerror}") from None


def _stage_binary(
    path: str, stamp: FileStamp, edit: ElfEdit | MachOEdit, stage: _Stage
) -> tuple[bytes, bytes, int]:
    """Stage the edited copy of one binary: (sha256 before, sha256 after, size after)."""
    try:
        src = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        raise _changed(path) from None
    try:
        if not _same(os.fstat(src), stamp):
            raise _changed(path)
        before = _sha256(src)
        fd, tmp = _temp(path)
        stage.binaries.append(_Staged(path, tmp, stamp))
        try:
            if isinstance(edit, ElfEdit):
                _copy(src, fd, stamp.size)
                patch_elf_fd(fd, edit, path)
            else:
                data = os.pread(src, stamp.size, 0)  # a Mach-O file is edited in memory (as in a wheel)
                _pwrite_all(fd, patch_macho_bytes(data, edit, path))
            _finish(fd, stamp)
            after, size = _sha256(fd), os.fstat(fd).st_size
        finally:
            os.close(fd)
    finally:
        os.close(src)
    return before, after, size


def _pwrite_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        pos += os.pwrite(fd, view[pos:], pos)


def _write_temp(path: str, data: bytes, mode: int) -> str:
    fd, tmp = _temp(path)
    try:
        _pwrite_all(fd, data)
        os.fchmod(fd, mode)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def _stage_metadata(
    d: Distribution, plan: WheelPlan, files: Sequence[ChangedFile], stage: _Stage
) -> list[str]:
    """Stage the distribution's merged repair manifest and its RECORD with the new rows."""
    from wheelfix import __version__

    record_path = posixpath.join(d.dist_info, "RECORD")
    try:
        st = os.stat(record_path)
        record = Path(record_path).read_bytes()
    except OSError as e:
        raise BadInput([Problem(record_path, None, f"cannot read: {e.strerror}")]) from None
    if (st.st_size, st.st_mtime_ns, st.st_ino) != d.record_stat or hashlib.sha256(
        record
    ).hexdigest() != d.record_sha256:
        raise _changed(record_path)
    rows = {f.member: (record_hash(bytes.fromhex(f.sha256_after)), f.size_after) for f in files}
    written: list[str] = []
    manifest = plan.manifest(__version__)
    if manifest is not None:
        data = manifest.to_json()
        path = posixpath.join(d.dist_info, MANIFEST_NAME)
        stage.metadata.append(_Staged(path, _write_temp(path, data, 0o644), None))
        rows[d.record_path(path)] = sha256_row(data)
        written.append(path)
    new_record = rewrite_record(record, rows)
    tmp = _write_temp(record_path, new_record, st.st_mode & 0o7777)
    stage.metadata.append(_Staged(record_path, tmp, None, d.record_stat))
    written.append(record_path)
    return written


def _record_digest(d: Distribution | None, member: str) -> bytes | None:
    if d is None:
        return None
    entry = next((e for e in d.record if e.path == member), None)
    return entry.digest if entry is not None and entry.algorithm == "sha256" else None


def _commit(stage: _Stage) -> None:
    for s in stage.binaries:  # the last look before anything changes
        try:
            st = os.stat(s.path, follow_symlinks=False)
        except OSError:
            raise _changed(s.path) from None
        if s.stamp is not None and not _same(st, s.stamp):
            raise _changed(s.path)
    for s in stage.metadata:
        if s.record_stat is not None:
            st = os.stat(s.path)
            if (st.st_size, st.st_mtime_ns, st.st_ino) != s.record_stat:
                raise _changed(s.path)
    for s in (*stage.binaries, *stage.metadata):
        try:
            os.replace(s.tmp, s.path)
        except OSError as e:
            raise OutputError(f"{s.path}: cannot replace: {e.strerror}") from None
    for directory in sorted({posixpath.dirname(s.path) for s in (*stage.binaries, *stage.metadata)}):
        with contextlib.suppress(OSError):
            dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


def _edits(plan: WheelPlan) -> list[ElfEdit | MachOEdit]:
    return [*plan.elf_edits, *plan.macho_edits]


def repair_in_place(env: EnvAnalysis, plans: Sequence[WheelPlan], *, dry_run: bool = False) -> InPlaceResult:
    """Apply ``plans`` (made from ``env.analysis``) to the environment's files, all or nothing."""
    refuse_store(env)
    if dry_run or not any(p.changes for p in plans):
        return InPlaceResult(tuple(plans), (), (), dry_run)
    stage = _Stage()
    changed: list[ChangedFile] = []
    metadata: list[str] = []
    try:
        for plan in plans:
            d = env.scan.owner(plan.wheel.scan)
            mine: list[ChangedFile] = []
            for edit in _edits(plan):
                path = env.scan.path_of(plan.wheel.scan, edit.member)
                stamp = env.scan.stamps[path]
                before, after, size = _stage_binary(path, stamp, edit, stage)
                expected = _record_digest(d, edit.member)
                matched = None if expected is None else expected == before
                mine.append(
                    ChangedFile(
                        path,
                        edit.member,
                        d.dist_info_name if d else None,
                        stamp.size,
                        size,
                        after.hex(),
                        matched,
                    )
                )
            if d is not None and mine:
                metadata += _stage_metadata(d, plan, mine, stage)
            changed += mine
        _commit(stage)
    except BaseException:
        stage.discard()
        raise
    return InPlaceResult(tuple(plans), tuple(changed), tuple(metadata), False)
