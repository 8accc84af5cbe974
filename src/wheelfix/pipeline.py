"""The pipeline every command runs, in one place: open → scan → analyze → plan → patch → write.

:class:`Pipeline` opens each wheel **once**, validating it with the caller's limits, and keeps it open: the
scan reads members from that open file, the patcher reads the members it edits from it, and the writer
copies the unchanged members from it. So the offsets measured while scanning are used on the very same
file, and nothing is validated twice with different limits. Data flows one way: archives → scans →
:class:`~wheelfix.analysis.model.Analysis` → :class:`~wheelfix.repair.plan.WheelPlan` → replacements →
output wheels. Nothing here prints; :mod:`wheelfix.api` wraps it for library users and :mod:`wheelfix.cli`
for the command line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

from wheelfix.analysis.model import Analysis
from wheelfix.analysis.resolve import analyze
from wheelfix.analysis.scan import Spool, WheelScan, default_jobs, scan_archive
from wheelfix.errors import BadInput, OutputError, Problem
from wheelfix.progress import Phase, Progress, ProgressEvent, report
from wheelfix.repair.patch import Replacement, patch_wheel
from wheelfix.repair.plan import WheelPlan
from wheelfix.wheel.archive import DEFAULT_LIMITS, Limits, WheelArchive
from wheelfix.wheel.atomic import copy_atomically
from wheelfix.wheel.manifest import MANIFEST_NAME
from wheelfix.wheel.writer import write_wheel

__all__ = ["Pipeline"]


class Pipeline:
    """The open, validated, scanned wheels of one command. Use as a context manager::

        with Pipeline(paths, limits=limits, jobs=4) as p:
            plans = plan_repair(p.analysis, index)
            p.write(plans, outdir)

    Opening raises :class:`~wheelfix.errors.BadInput` listing the problems of *every* wheel given, not just
    the first bad one; nothing stays open then.
    """

    def __init__(
        self,
        paths: Iterable[Path | str],
        *,
        limits: Limits = DEFAULT_LIMITS,
        jobs: int | None = None,
        scanned: Sequence[WheelScan] | None = None,
        progress: Progress | None = None,
        keep_binaries: bool = False,
    ):
        self.paths = tuple(Path(p) for p in paths)
        if not self.paths:
            raise ValueError("no wheels given")
        if scanned is not None and len(scanned) != len(self.paths):
            raise ValueError("one scan per wheel")
        self.limits = limits
        self.jobs = jobs or default_jobs()
        self.progress = progress  # called on this thread as members are scanned, binaries patched, ...
        self._scanned = scanned
        self._stack = ExitStack()
        self._archives: list[WheelArchive] = []
        self._scans: list[WheelScan] = []
        self._spools: list[Spool | None] = []
        # a repair keeps every binary the scan inflated (temp files, removed on exit) for the patcher
        self.keep_binaries = keep_binaries and scanned is None
        self._analysis: Analysis | None = None

    @classmethod
    def reopen(
        cls,
        plans: Sequence[WheelPlan],
        *,
        limits: Limits = DEFAULT_LIMITS,
        jobs: int | None = None,
        progress: Progress | None = None,
    ) -> Pipeline:
        """A pipeline over the wheels that ``plans`` were made from, opened again (once each) and refused
        unless each is still the very file that was scanned (size, mtime, central directory)."""
        scans = [plan.wheel.scan for plan in plans]
        return cls([s.path for s in scans], limits=limits, jobs=jobs, scanned=scans, progress=progress)

    def _open_one(self, i: int, path: Path) -> None:
        expect = self._scanned[i] if self._scanned is not None else None
        archive = self._stack.enter_context(
            WheelArchive.open(path, self.limits, expect=expect.identity if expect else None)
        )
        spool = self._stack.enter_context(Spool()) if self.keep_binaries else None
        if expect is None:
            expect = scan_archive(archive, jobs=self.jobs, progress=self.progress, spool=spool)
        self._scans.append(expect)
        self._spools.append(spool)
        self._archives.append(archive)

    def __enter__(self) -> Pipeline:
        problems: list[Problem] = []
        try:
            for i, path in enumerate(self.paths):
                try:
                    self._open_one(i, path)
                except BadInput as e:
                    problems.extend(e.problems)
            if problems:
                raise BadInput(problems)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()

    @property
    def scans(self) -> tuple[WheelScan, ...]:
        return tuple(self._scans)

    @property
    def analysis(self) -> Analysis:
        """Every need of every binary resolved against the whole set (computed once)."""
        if self._analysis is None:
            self._analysis = analyze(self._scans)
        return self._analysis

    def archive_for(self, plan: WheelPlan) -> WheelArchive:
        """The open archive a plan was made from."""
        return self._archives[self._index_of(plan)]

    def _index_of(self, plan: WheelPlan) -> int:
        for i, scan in enumerate(self._scans):
            if scan is plan.wheel.scan:
                return i
        raise ValueError(f"{plan.wheel.scan.path}: the plan was not made from this pipeline's analysis")

    def patch(self, plans: Sequence[WheelPlan], *, level: int = 6) -> list[dict[str, Replacement]]:
        """The patched, verified content of every edited member, for every plan — all before anything is
        written, so a failure in the last wheel leaves no output at all."""
        out = []
        for plan in plans:
            i = self._index_of(plan)
            archive, spool = self._archives[i], self._spools[i]
            out.append(
                patch_wheel(archive, plan, jobs=self.jobs, level=level, progress=self.progress, spool=spool)
            )
        return out

    def write(
        self,
        plans: Sequence[WheelPlan],
        outdir: Path,
        *,
        level: int = 6,
        replacements: Sequence[dict[str, Replacement]] | None = None,
    ) -> list[Path]:
        """Write each plan's wheel into ``outdir`` (same file name), patched, or copied as it is when the
        plan changes nothing. Each output is written to a temp name and renamed."""
        patched = list(replacements) if replacements is not None else self.patch(plans, level=level)
        try:
            outdir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{outdir}: cannot create the output directory: {e.strerror}") from None
        written: list[Path] = []
        for n, (plan, members) in enumerate(zip(plans, patched, strict=True)):
            archive = self.archive_for(plan)
            report(self.progress, ProgressEvent(Phase.WRITE, archive.path.name, n, len(plans), "wheels"))
            dest = outdir / archive.path.name
            replaced, added = _with_manifest(archive, plan, members)
            try:
                if replaced or added:
                    write_wheel(archive, dest, replaced, level=level, jobs=self.jobs, additions=added)
                else:
                    copy_atomically(archive.fileno(), dest)
            except OSError as e:
                raise OutputError(f"{dest}: cannot write: {e.strerror or e}") from None
            written.append(dest)
        return written


def _with_manifest(
    archive: WheelArchive, plan: WheelPlan, members: dict[str, Replacement]
) -> tuple[dict[str, Replacement], dict[str, bytes]]:
    """The replacements and new members of a repaired wheel: the patched binaries, and the repair manifest
    (``<dist-info>/wheelfix.json``, merged into the one an earlier repair left)."""
    from wheelfix import __version__

    manifest = plan.manifest(__version__)
    if manifest is None:
        return members, {}
    name = f"{archive.meta.dist_info}/{MANIFEST_NAME}"
    if any(i.filename == name for i in archive.members):
        return {**members, name: manifest.to_json()}, {}
    return members, {name: manifest.to_json()}
