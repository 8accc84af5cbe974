"""Build synthetic manylinux wheels, valid and hostile, for wheelfix's tests.

Needs only the standard library, gcc/g++ and binutils; the C sources live in ``synthetic_src/`` next to
this file.  Builds are deterministic: the same toolchain gives byte-identical wheels.

Use it from tests (``from tests.support import synthetic``) or from a shell, in the repository root::

    python -m tests.support.synthetic OUTDIR [NAME...]

Valid wheels are written to ``OUTDIR/<wheel file name>``; each hostile one to
``OUTDIR/<name>/evil-1.0-cp311-cp311-linux_x86_64.whl``.

The README's example wheel (testdata/wheels/wheelfix_example-1.0-cp311-cp311-manylinux_2_17_x86_64.whl,
committed) is the ``example`` wheel; regenerate it with::

    python -m tests.support.synthetic testdata/wheels example
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import shlex
import stat
import struct
import subprocess
import sys
import sysconfig
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "synthetic_src"
EXT_SUFFIX = ".cpython-311-x86_64-linux-gnu.so"
MANYLINUX = "cp311-cp311-manylinux_2_17_x86_64"
LINUX = "cp311-cp311-linux_x86_64"
EXAMPLE_FILENAME = f"wheelfix_example-1.0-{MANYLINUX}.whl"

# --no-as-needed: every binary records libc.so.6 (and each -l given) whatever the distro default.
_CFLAGS = ("-O2", "-fPIC", "-g0", f"-ffile-prefix-map={SRC}=.", "-Wl,--build-id=none", "-Wl,--no-as-needed")
_PY_INCLUDE = f"-I{sysconfig.get_paths()['include']}"
_LIBZ = "-l:libz.so.1"  # the runtime library itself: no zlib dev package needed
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o644
_EXEC_MODE = 0o755
_BOMB_SIZE = 50 * 1024 * 1024


# --- compiling ------------------------------------------------------------------------------------


def _compile(out: Path, source: str, flags: Sequence[str] = (), libs: Sequence[str | Path] = ()) -> Path:
    """Compile and link ``src/<source>`` into ``out``; C++ for ``.cpp`` sources."""
    compiler = "g++" if source.endswith(".cpp") else "gcc"
    # Relative source names keep the temp dir and checkout path out of the output.
    cmd = [compiler, *_CFLAGS, *flags, "-o", str(out), source, *map(str, libs)]
    proc = subprocess.run(cmd, cwd=SRC, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed:\n{proc.stderr}")
    return out


def _shared_lib(outdir: Path, source: str, soname: str) -> Path:
    return _compile(outdir / soname, source, ["-shared", f"-Wl,-soname,{soname}"])


def _runpath(value: str) -> str:
    return f"-Wl,--enable-new-dtags,-rpath,{value}"


def _rpath(value: str) -> str:
    return f"-Wl,--disable-new-dtags,-rpath,{value}"


def _extension(outdir: Path, source: str, module: str, search_path: str, libs: Sequence[str | Path]) -> Path:
    """A CPython extension (not linked to libpython); ``search_path`` is a _runpath/_rpath flag."""
    return _compile(outdir / f"{module}{EXT_SUFFIX}", source, ["-shared", _PY_INCLUDE, search_path], libs)


def build_libfoo(outdir: Path) -> Path:
    """Build ``outdir/libfoo.so.1``: SONAME libfoo.so.1, ``int foo_value(void)`` returns 42.

    It is on no system and bundled in no wheel: demo needs it from elsewhere.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    return _shared_lib(outdir, "foo.c", "libfoo.so.1")


# --- wheel archives -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One zip member; ``mode`` is the st_mode stored in the high 16 bits of external_attr."""

    name: str
    data: bytes
    mode: int = _FILE_MODE


@dataclass(frozen=True)
class Dist:
    name: str
    version: str
    tag: str
    requires: tuple[str, ...] = ()

    @property
    def dist_info(self) -> str:
        return f"{self.name}-{self.version}.dist-info"

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.tag}.whl"


def _zip(members: Sequence[Member]) -> bytes:
    """Write ``members`` in the given order with fixed timestamps and attributes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for member in members:
            info = zipfile.ZipInfo(member.name, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so readers honour the mode bits
            info.external_attr = member.mode << 16
            zf.writestr(info, member.data)
    return buf.getvalue()


def _hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _rows(members: Sequence[Member]) -> list[list[str]]:
    return [[m.name, _hash(m.data), str(len(m.data))] for m in members]


def _record(dist: Dist, rows: Sequence[Sequence[str]]) -> Member:
    """RECORD with ``rows`` plus its own hash-less row."""
    name = f"{dist.dist_info}/RECORD"
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([*rows, [name, "", ""]])
    return Member(name, text.getvalue().encode("utf-8"))


def _dist_info(dist: Dist, purelib: bool) -> list[Member]:
    """METADATA and WHEEL."""
    metadata = [
        "Metadata-Version: 2.1",
        f"Name: {dist.name}",
        f"Version: {dist.version}",
        "Summary: wheelfix synthetic test wheel",
        *(f"Requires-Dist: {req}" for req in dist.requires),
    ]
    wheel = [
        "Wheel-Version: 1.0",
        "Generator: wheelfix-testdata",
        f"Root-Is-Purelib: {'true' if purelib else 'false'}",
        f"Tag: {dist.tag}",
    ]
    return [
        Member(f"{dist.dist_info}/METADATA", ("\n".join(metadata) + "\n").encode("utf-8")),
        Member(f"{dist.dist_info}/WHEEL", ("\n".join(wheel) + "\n").encode("utf-8")),
    ]


def _body(dist: Dist, files: Mapping[str, bytes], modes: Mapping[str, int] | None = None) -> list[Member]:
    """Every member but RECORD: ``files`` sorted by name, then the dist-info files."""
    modes = modes or {}
    payload = [Member(name, files[name], modes.get(name, _FILE_MODE)) for name in sorted(files)]
    return [*payload, *_dist_info(dist, purelib=dist.tag.endswith("-none-any"))]


def _wheel(dist: Dist, files: Mapping[str, bytes], modes: Mapping[str, int] | None = None) -> bytes:
    """A correct wheel: ``files`` (name -> bytes, mode 0644 unless in ``modes``) plus dist-info."""
    body = _body(dist, files, modes)
    return _zip([*body, _record(dist, _rows(body))])


# --- valid wheels ---------------------------------------------------------------------------------

Built = tuple[str, bytes]  # (wheel file name, wheel bytes)

DEMO = Dist("demo", "1.0", MANYLINUX)
PROVIDER = Dist("provider", "2.0", MANYLINUX)
CONSUMER = Dist("consumer", "1.0", MANYLINUX, requires=("provider",))
PURE = Dist("purepkg", "1.0", "py3-none-any")
LEGACY = Dist("legacy", "1.0", LINUX)
EXAMPLE = Dist("wheelfix_example", "1.0", MANYLINUX)


def _build_demo(tmp: Path) -> Built:
    libfoo = build_libfoo(tmp)
    # Grafted the way auditwheel does it: the file name carries a hash and the SONAME (hence the
    # extension's NEEDED) is that same name, so ld.so finds it through RUNPATH.
    libbar = _shared_lib(tmp, "bar.c", "libbar-1a2b3c4d.so.1")
    ext = _extension(tmp, "demo.c", "_demo", _runpath("$ORIGIN/../demo.libs"), [libfoo, libbar, _LIBZ])
    tool = _compile(
        tmp / "demo-tool",
        "demo_tool.c",
        ["-pie", _rpath("$ORIGIN/../lib/python3.11/site-packages/demo.libs")],
        [libbar],
    )
    tool_name = "demo-1.0.data/scripts/demo-tool"
    files = {
        "demo/__init__.py": b"from ._demo import has_dlopened, value, zlib_version\n",
        f"demo/_demo{EXT_SUFFIX}": ext.read_bytes(),
        f"demo.libs/{libbar.name}": libbar.read_bytes(),
        tool_name: tool.read_bytes(),
    }
    return DEMO.filename, _wheel(DEMO, files, {tool_name: _EXEC_MODE})


def _build_provider(tmp: Path) -> Built:
    libprov = _shared_lib(tmp, "prov.c", "libprov.so.1")
    files = {
        "provider/__init__.py": b"from pathlib import Path\n\nLIB_DIR = Path(__file__).parent / 'lib'\n",
        "provider/lib/libprov.so.1": libprov.read_bytes(),
    }
    return PROVIDER.filename, _wheel(PROVIDER, files)


def _build_consumer(tmp: Path) -> Built:
    libprov = _shared_lib(tmp, "prov.c", "libprov.so.1")
    ext = _extension(tmp, "consumer.cpp", "_consumer", _runpath("$ORIGIN/../provider/lib"), [libprov])
    files = {
        "consumer/__init__.py": b"from ._consumer import describe\n",
        f"consumer/_consumer{EXT_SUFFIX}": ext.read_bytes(),
    }
    return CONSUMER.filename, _wheel(CONSUMER, files)


def _build_pure(tmp: Path) -> Built:
    files = {
        "purepkg/__init__.py": b"VALUE = 1\n",
        "purepkg/data.txt": b"no binaries here\n",
    }
    return PURE.filename, _wheel(PURE, files)


def _build_rpathlegacy(tmp: Path) -> Built:
    libleg = _shared_lib(tmp, "leg.c", "libleg.so.0")
    ext = _extension(tmp, "legacy.c", "_legacy", _rpath("$ORIGIN/.libs"), [libleg, "-lm"])
    files = {
        "legacy/__init__.py": b"from ._legacy import value\n",
        f"legacy/_legacy{EXT_SUFFIX}": ext.read_bytes(),
        "legacy/.libs/libleg.so.0": libleg.read_bytes(),
    }
    return LEGACY.filename, _wheel(LEGACY, files)


def _build_example(tmp: Path) -> Built:
    libexdep = _shared_lib(tmp, "exdep.c", "libexdep.so.1")
    ext = _extension(
        tmp, "example.c", "_example", _runpath("$ORIGIN/../wheelfix_example.libs"), [libexdep, _LIBZ]
    )
    files = {
        "wheelfix_example/__init__.py": b"from ._example import value, zlib_version\n",
        f"wheelfix_example/_example{EXT_SUFFIX}": ext.read_bytes(),
        "wheelfix_example.libs/libexdep.so.1": libexdep.read_bytes(),
    }
    return EXAMPLE.filename, _wheel(EXAMPLE, files)


# --- hostile wheels -------------------------------------------------------------------------------
# Each starts from the small `evil` wheel and carries exactly one defect; RECORD is otherwise right.

EVIL = Dist("evil", "1.0", LINUX)
_EVIL_FILES = {
    "evil/__init__.py": b"from .util import VALUE\n",
    "evil/util.py": b"VALUE = 1\n",
}
_EVIL_SO = f"evil/_evil{EXT_SUFFIX}"


def _evil(extra: Mapping[str, bytes] | None = None, modes: Mapping[str, int] | None = None) -> Built:
    return EVIL.filename, _wheel(EVIL, {**_EVIL_FILES, **(extra or {})}, modes)


def _evil_with_record(body: Sequence[Member], rows: Sequence[Sequence[str]]) -> Built:
    return EVIL.filename, _zip([*body, _record(EVIL, rows)])


def _replace_row(rows: list[list[str]], name: str, row: list[str]) -> list[list[str]]:
    return [row if r[0] == name else r for r in rows]


def _build_not_a_zip(tmp: Path) -> Built:
    return EVIL.filename, b"This is not a zip archive, just text named like a wheel.\n"


def _build_truncated_zip(tmp: Path) -> Built:
    _, data = _evil()
    return EVIL.filename, data[: len(data) // 2]


def _build_zipslip_dotdot(tmp: Path) -> Built:
    return _evil({"../evil.py": b"print('escaped')\n"})


def _build_zipslip_absolute(tmp: Path) -> Built:
    return _evil({"/etc/evil.py": b"print('escaped')\n"})


def _build_zipslip_drive(tmp: Path) -> Built:
    return _evil({"C:/evil.py": b"print('escaped')\n"})


def _build_zipslip_backslash(tmp: Path) -> Built:
    return _evil({"pkg\\..\\..\\evil.py": b"print('escaped')\n"})


def _build_duplicate_member(tmp: Path) -> Built:
    """evil/util.py stored twice with identical bytes, so its single RECORD row matches both."""
    body = _body(EVIL, _EVIL_FILES)
    dup = next(m for m in body if m.name == "evil/util.py")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns "Duplicate name"
        data = _zip([*body, dup, _record(EVIL, _rows(body))])
    return EVIL.filename, data


def _build_symlink_member(tmp: Path) -> Built:
    return _evil({"evil/link.py": b"/etc/passwd"}, {"evil/link.py": stat.S_IFLNK | 0o777})


def _build_bomb_ratio(tmp: Path) -> Built:
    return _evil({"evil/zeros.bin": bytes(_BOMB_SIZE)})


def _build_record_missing(tmp: Path) -> Built:
    return EVIL.filename, _zip(_body(EVIL, _EVIL_FILES))


def _build_record_malformed(tmp: Path) -> Built:
    """One row with four columns, one with a hash that is no ``algo=urlsafe-b64`` spec."""
    body = _body(EVIL, _EVIL_FILES)
    rows = _rows(body)
    init, util = (next(r for r in rows if r[0] == n) for n in ("evil/__init__.py", "evil/util.py"))
    rows = _replace_row(rows, init[0], [*init, "surplus"])
    rows = _replace_row(rows, util[0], [util[0], "sha256:!!not-base64!!", util[2]])
    return _evil_with_record(body, rows)


def _build_record_wrong_hash(tmp: Path) -> Built:
    body = _body(EVIL, _EVIL_FILES)
    rows = _rows(body)
    util = next(r for r in rows if r[0] == "evil/util.py")
    rows = _replace_row(rows, util[0], [util[0], _hash(b"VALUE = 2\n"), util[2]])
    return _evil_with_record(body, rows)


def _build_record_wrong_size(tmp: Path) -> Built:
    body = _body(EVIL, _EVIL_FILES)
    rows = _rows(body)
    util = next(r for r in rows if r[0] == "evil/util.py")
    rows = _replace_row(rows, util[0], [util[0], util[1], str(int(util[2]) + 1)])
    return _evil_with_record(body, rows)


def _build_record_unlisted_member(tmp: Path) -> Built:
    body = _body(EVIL, {**_EVIL_FILES, "evil/unlisted.py": b"print('not in RECORD')\n"})
    return _evil_with_record(body, _rows([m for m in body if m.name != "evil/unlisted.py"]))


def _build_record_lists_missing_file(tmp: Path) -> Built:
    body = _body(EVIL, _EVIL_FILES)
    ghost = Member("evil/missing.py", b"print('never shipped')\n")
    return _evil_with_record(body, _rows([*body, ghost]))


def _build_two_dist_info(tmp: Path) -> Built:
    other = Dist("other", "1.0", LINUX)
    return _evil({m.name: m.data for m in _dist_info(other, purelib=False)})


def _build_garbage_elf(tmp: Path) -> Built:
    """A valid ELF64 little-endian e_ident, then deterministic pseudo-random junk."""
    junk = b"".join(hashlib.sha256(b"junk%d" % i).digest() for i in range(16))
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    return _evil({_EVIL_SO: ident + junk})


def _build_truncated_elf(tmp: Path) -> Built:
    return _evil({_EVIL_SO: build_libfoo(tmp).read_bytes()[:100]})


def _build_elf_bad_offsets(tmp: Path) -> Built:
    """libfoo with e_phoff and e_shoff (ELF64 header offsets 0x20, 0x28) pointing past EOF."""
    data = bytearray(build_libfoo(tmp).read_bytes())
    struct.pack_into("<QQ", data, 0x20, len(data) + 0x1000, len(data) + 0x2000)
    return _evil({_EVIL_SO: bytes(data)})


# --- public API -----------------------------------------------------------------------------------

_VALID: dict[str, Callable[[Path], Built]] = {
    "demo": _build_demo,
    "provider": _build_provider,
    "consumer": _build_consumer,
    "pure": _build_pure,
    "rpathlegacy": _build_rpathlegacy,
    "example": _build_example,
}

_HOSTILE: dict[str, Callable[[Path], Built]] = {
    "not-a-zip": _build_not_a_zip,
    "truncated-zip": _build_truncated_zip,
    "zipslip-dotdot": _build_zipslip_dotdot,
    "zipslip-absolute": _build_zipslip_absolute,
    "zipslip-drive": _build_zipslip_drive,
    "zipslip-backslash": _build_zipslip_backslash,
    "duplicate-member": _build_duplicate_member,
    "symlink-member": _build_symlink_member,
    "bomb-ratio": _build_bomb_ratio,
    "record-missing": _build_record_missing,
    "record-malformed": _build_record_malformed,
    "record-wrong-hash": _build_record_wrong_hash,
    "record-wrong-size": _build_record_wrong_size,
    "record-unlisted-member": _build_record_unlisted_member,
    "record-lists-missing-file": _build_record_lists_missing_file,
    "two-dist-info": _build_two_dist_info,
    "garbage-elf": _build_garbage_elf,
    "truncated-elf": _build_truncated_elf,
    "elf-bad-offsets": _build_elf_bad_offsets,
}

WHEELS: tuple[str, ...] = tuple(_VALID)
HOSTILE: tuple[str, ...] = tuple(_HOSTILE)


def build_wheel(name: str, outdir: Path) -> Path:
    """Build wheel ``name`` (from WHEELS or HOSTILE) and return its path.

    Valid wheels go to ``outdir/<file name>``, hostile ones to ``outdir/<name>/<file name>``.
    """
    if name in _VALID:
        builder, target = _VALID[name], outdir
    elif name in _HOSTILE:
        builder, target = _HOSTILE[name], outdir / name
    else:
        raise ValueError(f"unknown test wheel {name!r}; known: {', '.join(WHEELS + HOSTILE)}")
    with tempfile.TemporaryDirectory(prefix="wheelfix-testdata-") as tmp:
        filename, data = builder(Path(tmp))
    target.mkdir(parents=True, exist_ok=True)
    path = target / filename
    path.write_bytes(data)
    return path


def build_all(outdir: Path) -> dict[str, Path]:
    """Build every valid wheel (WHEELS) into ``outdir``."""
    return {name: build_wheel(name, outdir) for name in WHEELS}


def write_example(repo_root: Path) -> Path:
    """(Re)write the committed README example, testdata/wheels/wheelfix_example-1.0-...whl."""
    return build_wheel("example", repo_root / "testdata" / "wheels")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("names", nargs="*", metavar="NAME", help="default: all, valid and hostile")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(WHEELS + HOSTILE))
    if unknown:
        parser.error(f"unknown wheel(s) {', '.join(unknown)}; known: {', '.join(WHEELS + HOSTILE)}")
    for name in args.names or WHEELS + HOSTILE:
        print(build_wheel(name, args.outdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
