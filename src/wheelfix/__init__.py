"""wheelfix: make prebuilt binary wheels work on Nix, and tell CI whether a wheel is portable.

The public API (see ``docs/api.md``)::

    import wheelfix

    analysis = wheelfix.inspect(["torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl"])
    result = wheelfix.check(analysis, "nix")
    wheelfix.repair(["demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"], "out/",
                    lib_paths=["/nix/store/...-zlib/lib"])

Every error wheelfix raises on purpose is a :class:`wheelfix.Error`; its ``exit_code`` is the command line's.
"""

from functools import cache as _cache

from wheelfix.analysis.check import (
    CheckResult,
    Finding,
    Severity,
    UnknownTarget,
    WheelVerdict,
    consistent_with,
)
from wheelfix.analysis.model import (
    Analysis,
    BinaryFormat,
    BinaryKind,
    Library,
    Need,
    Outcome,
    Resolution,
    SearchDir,
    Source,
    WheelAnalysis,
)
from wheelfix.api import (
    NixFragment,
    RepairIncomplete,
    RepairResult,
    check,
    check_env,
    inspect,
    inspect_env,
    lib_path_warnings,
    lookup,
    nix_fragment,
    nixpkgs_libraries,
    plan_repair,
    repair,
    repair_env,
    write_repaired,
)
from wheelfix.env.inplace import ChangedFile, InPlaceResult
from wheelfix.env.model import EnvAnalysis
from wheelfix.errors import BadInput, Error, Findings, OutputError, Problem, UsageError
from wheelfix.nixkb.kb import Answer, Candidate
from wheelfix.progress import Phase, Progress, ProgressEvent
from wheelfix.repair.nixpkgs import NixpkgsLibraries, NixpkgsOutput
from wheelfix.repair.plan import ElfEdit, MachOEdit, Missing, NoRoom, SliceEdit, Strategy, WheelPlan
from wheelfix.wheel.archive import DEFAULT_LIMITS, Limits

__all__ = [
    "DEFAULT_LIMITS",
    "Analysis",
    "Answer",
    "BadInput",
    "BinaryFormat",
    "BinaryKind",
    "Candidate",
    "ChangedFile",
    "CheckResult",
    "ElfEdit",
    "EnvAnalysis",
    "Error",
    "Finding",
    "Findings",
    "InPlaceResult",
    "Library",
    "Limits",
    "MachOEdit",
    "Missing",
    "Need",
    "NixFragment",
    "NixpkgsLibraries",
    "NixpkgsOutput",
    "NoRoom",
    "Outcome",
    "OutputError",
    "Phase",
    "Problem",
    "Progress",
    "ProgressEvent",
    "RepairIncomplete",
    "RepairResult",
    "Resolution",
    "SearchDir",
    "Severity",
    "SliceEdit",
    "Source",
    "Strategy",
    "UnknownTarget",
    "UsageError",
    "WheelAnalysis",
    "WheelPlan",
    "WheelVerdict",
    "__version__",
    "check",
    "check_env",
    "consistent_with",
    "inspect",
    "inspect_env",
    "lib_path_warnings",
    "lookup",
    "nix_fragment",
    "nixpkgs_libraries",
    "plan_repair",
    "repair",
    "repair_env",
    "write_repaired",
]


@_cache
def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wheelfix")  # the one source: pyproject.toml
    except PackageNotFoundError:  # pragma: no cover - run from a source tree that is not installed
        return "0+unknown"


def __getattr__(name: str) -> str:
    # ``__version__`` is looked up on first use: importlib.metadata costs 40 ms of every start
    if name == "__version__":
        return _installed_version()
    raise AttributeError(f"module 'wheelfix' has no attribute {name!r}")
