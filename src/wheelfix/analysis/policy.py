"""What a soname is, independent of any wheel: part of glibc, a GPU driver library, the interpreter's
libpython, musl's C library, or allowed by a manylinux/musllinux policy. Policy data comes from auditwheel's
packaged JSON (``manylinux-policy.json``, ``musllinux-policy.json``): allowlist, symbol versions per
architecture, and blacklisted symbols per library."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

__all__ = [
    "LEGACY_ALIASES",
    "LinuxPolicy",
    "LinuxTag",
    "ManylinuxPolicy",
    "is_glibc",
    "is_gpu_driver",
    "is_libpython",
    "is_musl_libc",
    "linux_policies",
    "manylinux_allowlist",
    "manylinux_policies",
    "manylinux_policy",
    "musl_libc_soname",
    "musllinux_policies",
    "parse_linux_tag",
    "policy_allowlist",
    "tag_machine",
]

# Libraries built from glibc's source tree. libcrypt.so.1 is not here: glibc dropped it (2.38) and Nix
# ships it as libxcrypt, a separate package.
_GLIBC = frozenset(
    {
        "libc.so.6",
        "libm.so.6",
        "libdl.so.2",
        "librt.so.1",
        "libpthread.so.0",
        "libutil.so.1",
        "libresolv.so.2",
        "libanl.so.1",
        "libnsl.so.1",
        "libmvec.so.1",
        "libBrokenLocale.so.1",
        "libthread_db.so.1",
        "libc_malloc_debug.so.0",
        "libmemusage.so",
        "libpcprofile.so",
        "libSegFault.so",
    }
)
_GLIBC_PATTERNS = ("ld-linux*.so.*", "ld64.so.*", "ld.so.*", "libnss_*.so.2")

# Userspace halves of the GPU kernel drivers: they must match the running kernel module, so they come
# from the host's driver (on NixOS /run/opengl-driver/lib), never from a package.
_GPU_DRIVER_PATTERNS = (
    "libcuda.so*",
    "libcudadebugger.so*",
    "libnvidia-*.so*",
    "libnvcuvid.so*",
    "libnvoptix.so*",
    "libGLX_nvidia.so*",
    "libEGL_nvidia.so*",
    "libGLESv1_CM_nvidia.so*",
    "libGLESv2_nvidia.so*",
    "libvdpau_nvidia.so*",
)

# musl's C library (which is also its dynamic loader), per architecture: what a musllinux policy's
# "libc.so" stands for (auditwheel's _fixup_musl_libc_soname)
_MUSL_LIBC = {
    "x86_64": "libc.musl-x86_64.so.1",
    "i686": "libc.musl-x86.so.1",
    "aarch64": "libc.musl-aarch64.so.1",
    "s390x": "libc.musl-s390x.so.1",
    "ppc64le": "libc.musl-ppc64le.so.1",
    "armv7l": "libc.musl-armv7.so.1",
    "riscv64": "libc.musl-riscv64.so.1",
    "loongarch64": "libc.musl-loongarch64.so.1",
}
_MUSL_PATTERNS = ("libc.musl-*.so.1", "ld-musl-*.so.1")


def is_glibc(soname: str) -> bool:
    return soname in _GLIBC or any(fnmatch.fnmatchcase(soname, p) for p in _GLIBC_PATTERNS)


def is_gpu_driver(soname: str) -> bool:
    return any(fnmatch.fnmatchcase(soname, p) for p in _GPU_DRIVER_PATTERNS)


def is_libpython(soname: str) -> bool:
    return re.fullmatch(r"libpython\d+\.\d+[a-z]*\.so(\.[0-9.]+)?", soname) is not None


def is_musl_libc(soname: str) -> bool:
    """musl's C library or loader (``libc.musl-x86_64.so.1``, ``ld-musl-x86_64.so.1``): a binary that needs
    it is a musllinux binary, for a musl-based Python (Alpine), never loadable into a glibc one."""
    return any(fnmatch.fnmatchcase(soname, p) for p in _MUSL_PATTERNS)


def musl_libc_soname(arch: str) -> str | None:
    return _MUSL_LIBC.get(arch)


@dataclass(frozen=True, slots=True)
class LinuxPolicy:
    """One manylinux (glibc) or musllinux (musl) policy of auditwheel's data, for every architecture."""

    name: str  # manylinux_2_17, musllinux_1_2
    libc: str  # "glibc" or "musl"
    aliases: tuple[str, ...]  # manylinux2014
    priority: int  # higher: more compatible (auditwheel's ordering)
    version: tuple[int, int]  # the glibc or musl version the policy stands for
    lib_whitelist: frozenset[str]  # as in the data; musl's "libc.so" means musl_libc_soname(arch)
    symbol_versions: dict[str, dict[str, frozenset[str]]]  # arch -> prefix -> allowed versions
    blacklist: dict[str, frozenset[str]]  # soname -> symbols a wheel must not import from it
    interpolated: bool = False  # made up for a PEP 600 tag between (or beyond) the data's policies

    @property
    def glibc(self) -> tuple[int, int]:
        """The glibc version (manylinux); kept for callers of the manylinux-only API."""
        return self.version

    @property
    def family(self) -> str:
        return "manylinux" if self.libc == "glibc" else "musllinux"

    def allowed_versions(self, arch: str, prefix: str) -> frozenset[str] | None:
        return self.symbol_versions.get(arch, {}).get(prefix)

    def covers(self, arch: str) -> bool:
        return arch in self.symbol_versions

    def allows_library(self, soname: str, arch: str) -> bool:
        if soname in self.lib_whitelist:
            return True
        return self.libc == "musl" and "libc.so" in self.lib_whitelist and soname == _MUSL_LIBC.get(arch)

    def tag(self, arch: str) -> str:
        return f"{self.name}_{arch}"


ManylinuxPolicy = LinuxPolicy  # the name before musllinux policies existed


def _policy_text(filename: str) -> str:
    """auditwheel's policy file, found without importing auditwheel (its package imports pyelftools and
    more: a tenth of a second of every wheelfix start)."""
    spec = importlib.util.find_spec("auditwheel")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "policy" / filename
        if path.is_file():
            return path.read_text("utf-8")
    return resources.files("auditwheel.policy").joinpath(filename).read_text("utf-8")


def _load(filename: str, libc: str) -> tuple[LinuxPolicy, ...]:
    text = _policy_text(filename)
    prefix = "manylinux" if libc == "glibc" else "musllinux"
    out = []
    for raw in json.loads(text):
        m = re.fullmatch(prefix + r"_(\d+)_(\d+)", raw["name"])
        if not m:
            continue  # the "linux" pseudo-policy
        out.append(
            LinuxPolicy(
                name=raw["name"],
                libc=libc,
                aliases=tuple(raw.get("aliases", ())),
                priority=int(raw["priority"]),
                version=(int(m.group(1)), int(m.group(2))),
                lib_whitelist=frozenset(raw["lib_whitelist"]),
                symbol_versions={
                    arch: {p: frozenset(vs) for p, vs in prefixes.items()}
                    for arch, prefixes in raw["symbol_versions"].items()
                },
                blacklist={k: frozenset(v) for k, v in raw.get("blacklist", {}).items()},
            )
        )
    return tuple(sorted(out, key=lambda p: p.version))


@cache
def manylinux_policies() -> tuple[LinuxPolicy, ...]:
    """auditwheel's manylinux policies, oldest glibc first."""
    return _load("manylinux-policy.json", "glibc")


@cache
def musllinux_policies() -> tuple[LinuxPolicy, ...]:
    """auditwheel's musllinux policies, oldest musl first."""
    return _load("musllinux-policy.json", "musl")


def linux_policies(libc: str) -> tuple[LinuxPolicy, ...]:
    """The policies of one C library, oldest (most compatible) first."""
    return manylinux_policies() if libc == "glibc" else musllinux_policies()


LEGACY_ALIASES = {
    "manylinux1": "manylinux_2_5",
    "manylinux2010": "manylinux_2_12",
    "manylinux2014": "manylinux_2_17",
}
_TAG = re.compile(
    r"(?P<policy>(?P<family>manylinux|musllinux)_(?P<major>\d+)_(?P<minor>\d+)|manylinux1|manylinux2010|"
    r"manylinux2014|linux)(?:_(?P<arch>[a-z0-9]+(?:_[a-z0-9]+)*))?"
)
# the ELF machine name (wheelfix.binfmt.elf.reader.MACHINES) of tag architectures spelled differently
_TAG_MACHINE = {"armv6l": "armv7l", "armv8l": "armv7l", "i386": "i686", "i586": "i686"}


def tag_machine(arch: str) -> str:
    """The ELF machine name binaries of a tag architecture have (``armv6l`` -> ``armv7l``)."""
    return _TAG_MACHINE.get(arch, arch)


@dataclass(frozen=True, slots=True)
class LinuxTag:
    """A Linux platform tag taken apart: ``policy`` is None for ``linux_<arch>`` (no promise beyond the
    architecture); ``arch`` is None when the name carries none (a bare target such as manylinux_2_17)."""

    tag: str
    family: str  # "manylinux", "musllinux" or "linux"
    policy: LinuxPolicy | None
    arch: str | None


def _interpolate(libc: str, version: tuple[int, int]) -> LinuxPolicy | None:
    """A policy for a PEP 600/656 version the data does not list (manylinux_2_25): the nearest older
    policy's allowlist, blacklist and symbol versions, plus the C library's own versions up to ``version``
    (taken from the next newer policy, or made up past the newest). None below the oldest policy."""
    policies = linux_policies(libc)
    older = [p for p in policies if p.version <= version]
    if not older:
        return None
    base = older[-1]
    if base.version == version:
        return base
    newer = next((p for p in policies if p.version > version), None)
    prefix = "GLIBC" if libc == "glibc" else None
    symbol_versions: dict[str, dict[str, frozenset[str]]] = {}
    for arch, prefixes in base.symbol_versions.items():
        merged = dict(prefixes)
        if prefix is not None and prefix in merged:
            extra: set[str] = set()
            if newer is not None:
                extra = {v for v in newer.symbol_versions.get(arch, {}).get(prefix, ()) if _key(v) <= version}
            else:
                extra = {f"{version[0]}.{m}" for m in range(base.version[1] + 1, version[1] + 1)}
            merged[prefix] = merged[prefix] | frozenset(extra)
        symbol_versions[arch] = merged
    name = f"{'manylinux' if libc == 'glibc' else 'musllinux'}_{version[0]}_{version[1]}"
    return LinuxPolicy(
        name=name,
        libc=libc,
        aliases=(),
        priority=base.priority,
        version=version,
        lib_whitelist=base.lib_whitelist,
        symbol_versions=symbol_versions,
        blacklist=base.blacklist,
        interpolated=True,
    )


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split(".") if x.isdigit())


@cache
def parse_linux_tag(tag: str) -> LinuxTag | None:
    """``manylinux_2_17_x86_64``, ``manylinux2014_x86_64``, ``musllinux_1_2_aarch64``, ``linux_x86_64``, or
    a bare policy name (``manylinux_2_28``, ``musllinux_1_1``); None for anything else (``macosx_11_0_arm64``,
    ``any``, an unknown architecture)."""
    m = _TAG.fullmatch(tag)
    if m is None:
        return None
    arch = m.group("arch")
    name = m.group("policy")
    if name == "linux":
        return LinuxTag(tag, "linux", None, arch) if arch else None
    if name in LEGACY_ALIASES:
        name = LEGACY_ALIASES[name]
        m2 = re.fullmatch(r"manylinux_(\d+)_(\d+)", name)
        assert m2 is not None
        family, version = "manylinux", (int(m2.group(1)), int(m2.group(2)))
    else:
        family, version = m.group("family"), (int(m.group("major")), int(m.group("minor")))
    libc = "glibc" if family == "manylinux" else "musl"
    policy = next((p for p in linux_policies(libc) if p.version == version), None) or _interpolate(
        libc, version
    )
    if policy is None:
        return None
    return LinuxTag(tag, family, policy, arch)


def manylinux_policy(name: str) -> LinuxPolicy | None:
    """Look a manylinux policy up by name or alias, with or without an architecture suffix
    (``manylinux_2_17``, ``manylinux2014``, ``manylinux_2_28_x86_64``)."""
    parsed = parse_linux_tag(name)
    if parsed is None or parsed.family != "manylinux":
        return None
    return parsed.policy


@cache
def manylinux_allowlist() -> frozenset[str]:
    """Every soname some manylinux policy lets a wheel leave unbundled."""
    return frozenset().union(*(p.lib_whitelist for p in manylinux_policies()))


@cache
def policy_allowlist() -> frozenset[str]:
    """Every soname some manylinux or musllinux policy lets a wheel leave unbundled (musl's libc by its
    real names): a bundled copy of one of these can be preempted by a system copy loaded first."""
    return (
        manylinux_allowlist()
        | frozenset(n for p in musllinux_policies() for n in p.lib_whitelist if n != "libc.so")
        | frozenset(_MUSL_LIBC.values())
    )
