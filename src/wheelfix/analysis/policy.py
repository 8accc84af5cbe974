"""What a soname is, independent of any wheel: part of glibc, a GPU driver library, the interpreter's
libpython, or allowed by a manylinux policy. Policy data comes from auditwheel's packaged JSON."""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = [
    "ManylinuxPolicy",
    "is_glibc",
    "is_gpu_driver",
    "is_libpython",
    "manylinux_allowlist",
    "manylinux_policies",
    "manylinux_policy",
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


def is_glibc(soname: str) -> bool:
    return soname in _GLIBC or any(fnmatch.fnmatchcase(soname, p) for p in _GLIBC_PATTERNS)


def is_gpu_driver(soname: str) -> bool:
    return any(fnmatch.fnmatchcase(soname, p) for p in _GPU_DRIVER_PATTERNS)


def is_libpython(soname: str) -> bool:
    return re.fullmatch(r"libpython\d+\.\d+[a-z]*\.so(\.[0-9.]+)?", soname) is not None


@dataclass(frozen=True, slots=True)
class ManylinuxPolicy:
    name: str  # manylinux_2_17
    aliases: tuple[str, ...]  # manylinux2014
    priority: int
    glibc: tuple[int, int]
    lib_whitelist: frozenset[str]
    symbol_versions: dict[str, dict[str, frozenset[str]]]  # arch -> prefix -> allowed versions

    def allowed_versions(self, arch: str, prefix: str) -> frozenset[str] | None:
        return self.symbol_versions.get(arch, {}).get(prefix)


@cache
def manylinux_policies() -> tuple[ManylinuxPolicy, ...]:
    text = resources.files("auditwheel.policy").joinpath("manylinux-policy.json").read_text("utf-8")
    out = []
    for raw in json.loads(text):
        m = re.fullmatch(r"manylinux_(\d+)_(\d+)", raw["name"])
        if not m:
            continue  # the "linux" pseudo-policy
        out.append(
            ManylinuxPolicy(
                name=raw["name"],
                aliases=tuple(raw.get("aliases", ())),
                priority=int(raw["priority"]),
                glibc=(int(m.group(1)), int(m.group(2))),
                lib_whitelist=frozenset(raw["lib_whitelist"]),
                symbol_versions={
                    arch: {prefix: frozenset(vs) for prefix, vs in prefixes.items()}
                    for arch, prefixes in raw["symbol_versions"].items()
                },
            )
        )
    return tuple(sorted(out, key=lambda p: p.glibc))


def manylinux_policy(name: str) -> ManylinuxPolicy | None:
    """Look a policy up by name or alias, with or without an architecture suffix
    (``manylinux_2_17``, ``manylinux2014``, ``manylinux_2_28_x86_64``)."""
    base = re.sub(r"_(x86_64|i686|aarch64|armv7l|ppc64le|ppc64|s390x|riscv64|loongarch64)$", "", name)
    for policy in manylinux_policies():
        if base == policy.name or base in policy.aliases:
            return policy
    return None


@cache
def manylinux_allowlist() -> frozenset[str]:
    """Every soname some manylinux policy lets a wheel leave unbundled."""
    return frozenset().union(*(p.lib_whitelist for p in manylinux_policies()))
