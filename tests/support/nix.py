"""Real Nix (Debian's nix-bin) for the tests: store paths from ``nix-store --add``, the references Nix
sees, and nix/hook.sh run inside a raw ``derivation``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.support.oracles import patchelf
from tests.support.paths import NIX_HOOK
from tests.support.prereq import require_tool

NIX_CONFIG = (
    "substituters =\nbuild-users-group =\nsandbox = false\nexperimental-features = nix-command flakes"
)
# a `wheelfix` command for the hook: this interpreter's wheelfix
WHEELFIX = '#!/bin/sh\nexec {python} -m wheelfix "$@"\n'


def nix_env() -> dict[str, str]:
    return {**os.environ, "NIX_CONFIG": NIX_CONFIG}


# Nix kills a builder that exits very quickly with SIGKILL now and then (NixOS/nix#2176, still in 2.8),
# more often on a loaded machine: such a build is retried; what was built stays built.
_KILLED = "failed due to signal 9 (Killed)"
_BUILDERS = frozenset({"nix", "nix-build", "nix-store"})


def run(cmd: Sequence[str | Path], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a command (Nix ones with ``nix_env()`` unless ``env`` is given); a Nix build killed by nix#2176
    is retried up to three times."""
    args = [str(c) for c in cmd]
    if Path(args[0]).name.startswith("nix"):
        kw.setdefault("env", nix_env())
    for _attempt in range(4):
        proc = subprocess.run(
            args, capture_output=True, text=True, errors="replace", check=False, timeout=1200, **kw
        )
        if proc.returncode == 0 or _KILLED not in proc.stderr or Path(args[0]).name not in _BUILDERS:
            return proc
    return proc


def nix_add(directory: Path) -> str:
    """``nix-store --add`` of a directory: its store path."""
    require_tool("nix-store")
    out = subprocess.run(
        ["nix-store", "--add", str(directory)], capture_output=True, text=True, check=True, env=nix_env()
    )
    return out.stdout.strip()


def references(path: Path) -> list[str]:
    """``nix-store -q --references``: the store paths Nix sees referenced from ``path``."""
    proc = run(["nix-store", "-q", "--references", path], env=nix_env())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


RAW_BUILDER = r"""
set -eu -o pipefail
export PATH="$hostPath"
addEnvHooks() { shift; envHooks+=("$@"); }
targetOffset=0
source "$hook"
for lib in $libs; do
    for h in "${envHooks[@]}"; do "$h" "$lib"; done
done
cd "$TMPDIR"
mkdir -p "$out" input
ln -s "$wheel" "input/$wheelName"
wheelfixRepairWheels "$out" "input/$wheelName"
(cd "$out" && "$wheelfix" inspect --json "$wheelName" > wheelfix-report.json)
"""


def build_with_hook(tmp_path: Path, wheel: Path, libs: Sequence[str]) -> Path:
    """Run the hook's repair of ``wheel`` in a raw derivation whose host dependencies are ``libs`` (store
    paths); returns the output (the repaired wheel and its inspect report)."""
    require_tool("nix-build")
    wrapper = tmp_path / "wheelfix"
    wrapper.write_text(WHEELFIX.format(python=sys.executable))
    wrapper.chmod(0o755)
    hook = tmp_path / "hook.sh"
    hook.write_text(
        NIX_HOOK.read_text().replace("@wheelfix@", str(wrapper)).replace("@patchelf@", patchelf())
    )
    builder = tmp_path / "builder.sh"
    builder.write_text(RAW_BUILDER)
    expr = tmp_path / "repair.nix"
    store_paths = " ".join(f'"{p}"' for p in libs)
    expr.write_text(f"""
derivation {{
  name = "wheel-repaired-in-nix";
  system = builtins.currentSystem;
  builder = "{require_tool("bash")}";
  args = [ {builder} ];
  hook = {hook};
  wheel = {wheel};
  wheelName = "{wheel.name}";
  wheelfix = "{wrapper}";
  hostPath = "{os.environ["PATH"]}";
  libs = map builtins.storePath [ {store_paths} ];
}}
""")
    built = run(["nix-build", "--no-out-link", expr], env=nix_env())
    assert built.returncode == 0, built.stderr
    return Path(built.stdout.strip().splitlines()[-1])
