"""`wheelfix repair --nixpkgs REF` end to end with real Nix: a nixpkgs-shaped stub of real derivations over
`nix-store --add`ed libraries (tests/support/mini_nixpkgs.py), as a plain default.nix and as a `path:` flake.

The synthetic demo (libfoo.so.1, libz.so.1, an executable with PT_INTERP) and consumer (libstdc++.so.6 and
libgcc_s.so.1, the `lib` output of `stdenv.cc.cc`) wheels, with provider (which consumer needs), are
repaired against it: the outputs are the ones `wheelfix nix` names, built by `nix-store --realise` from
their .drv files; the wheels, installed in a fresh venv, import in `python -I -S` with every library mapped
from those store paths; each NAME.nix fragment evaluates to exactly those outputs; repairing again changes
nothing, byte for byte. Then the failures: an unknown need, an attribute nixpkgs does not have, a package
that does not build, each named."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

import wheelfix
from wheelfix.nixkb.prefs import PACKAGED_NAME

from tests.support.cli import RunCli, fresh_venv
from tests.support.mini_nixpkgs import MiniNixpkgs, make_mini_nixpkgs
from tests.support.nix import nix_add, nix_env, run
from tests.support.oracles import readelf
from tests.support.prereq import require_tool

DEMO_EXT = "demo/_demo.cpython-311-x86_64-linux-gnu.so"
CONSUMER_EXT = "consumer/_consumer.cpython-311-x86_64-linux-gnu.so"
DEMO_TOOL = "demo-1.0.data/scripts/demo-tool"


def _prefs(where: Path, *rows: str) -> Path:
    """The packaged preferences plus ``rows`` (libfoo is the test's own library: no package knows it)."""
    text = resources.files("wheelfix.data").joinpath(PACKAGED_NAME).read_text(encoding="utf-8")
    path = where / "prefs.tsv"
    path.write_text(text + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


FOO_ROW = "libfoo.so.1\tnixpkgs\tfoo\tout\tnone\t-\tthe test's library, in the mini nixpkgs\ttests"


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> MiniNixpkgs:
    require_tool("nix-store")
    require_tool("nix-instantiate")
    return make_mini_nixpkgs(tmp_path_factory.mktemp("mini"))


@pytest.fixture(scope="module")
def prefs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _prefs(tmp_path_factory.mktemp("prefs"), FOO_ROW)


def _outputs(mini: MiniNixpkgs, *refs: str) -> dict[str, str]:
    """attr.output -> store path, evaluated independently of wheelfix (nix-instantiate on the stub)."""
    items = " ".join(f'"{r}" = (pkgs.{r}).outPath;' for r in refs)
    expr = f"let pkgs = import {mini.root} {{ }}; in {{ {items} }}"
    proc = run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr], env=nix_env())
    assert proc.returncode == 0, proc.stderr
    paths: dict[str, str] = json.loads(proc.stdout)
    return paths


@pytest.fixture(scope="module")
def store(mini: MiniNixpkgs) -> dict[str, str]:
    return _outputs(mini, "foo.out", "zlib.out", "stdenv.cc.cc.lib", "glibc.out")


IMPORT = """
import sys
sys.path.insert(0, sys.argv[1])
import demo, consumer
print(demo.value())
print(consumer.describe())
print(open('/proc/self/maps').read())
"""


def _import(site: Path) -> subprocess.CompletedProcess[str]:
    # -I -S: nothing of this process's environment or site-packages
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", IMPORT, str(site)], capture_output=True, text=True, check=False
    )


def _site(prefix: Path) -> Path:
    (site,) = prefix.glob("lib/python3*/site-packages")
    return site


def _eval_fragment(fragment: Path, mini: MiniNixpkgs) -> list[str]:
    """The store paths of the packages the plain fragment lists, with pkgs = the stub."""
    expr = f"map (p: p.outPath) (import {fragment} {{ pkgs = import {mini.root} {{ }}; }})"
    proc = run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr], env=nix_env())
    assert proc.returncode == 0, proc.stderr
    paths: list[str] = json.loads(proc.stdout)
    return paths


def _repair(
    run_cli: RunCli, wheels: list[Path], out: Path, *args: str | Path
) -> subprocess.CompletedProcess[str]:
    return run_cli("repair", *wheels, "-o", out, *args)


def _three(wheels: dict[str, Path]) -> list[Path]:
    return [wheels["demo"], wheels["consumer"], wheels["provider"]]


def test_default_nix_end_to_end(
    run_cli: RunCli,
    wheels: dict[str, Path],
    mini: MiniNixpkgs,
    prefs: Path,
    store: dict[str, str],
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    proc = _repair(run_cli, _three(wheels), out, "--nixpkgs", mini.root, "--preferences", prefs)
    assert proc.returncode == 0, proc.stderr
    # the outputs, named as Nix with their store paths, before the plan
    for ref, attr in (
        ("pkgs.foo", "foo.out"),
        ("pkgs.zlib", "zlib.out"),
        ("pkgs.stdenv.cc.cc.lib", "stdenv.cc.cc.lib"),
        ("pkgs.glibc", "glibc.out"),
    ):
        assert f"{ref}" in proc.stdout and store[attr] in proc.stdout, proc.stdout
    # the plan shows the added entries, not whole RUNPATHs
    assert f"+ {store['zlib.out']}/lib  (libz.so.1; pkgs.zlib)" in proc.stdout
    assert "RUNPATH $ORIGIN" not in proc.stdout
    # realised by Nix from the evaluated derivations (not nix-store --add'ed: they have a deriver)
    for output in store.values():
        assert Path(output).is_dir()
        deriver = run(["nix-store", "-q", "--deriver", output], env=nix_env()).stdout.strip()
        assert deriver.endswith(".drv") and Path(deriver).exists(), (output, deriver)
    lib_out = Path(store["stdenv.cc.cc.lib"])
    assert lib_out.name.endswith("-gcc-13.3.0-lib") and (lib_out / "lib" / "libstdc++.so.6").is_file()

    # installed in a fresh venv, the wheels import with every library from those store paths
    demo, consumer, provider = (out / w.name for w in _three(wheels))
    site = _site(fresh_venv(tmp_path / "venv", [demo, consumer, provider]))
    dynamic = readelf(site / DEMO_EXT, "-d")
    assert (
        f"Library runpath: [$ORIGIN/../demo.libs:{store['foo.out']}/lib:{store['zlib.out']}/lib]" in dynamic
    )
    assert store["glibc.out"] + "/lib/ld-linux-x86-64.so.2" in readelf(
        site.parents[2] / "bin" / "demo-tool", "-l"
    )
    ok = _import(site)
    assert ok.returncode == 0, ok.stderr
    value, described, maps = ok.stdout.split("\n", 2)
    assert value == "49" and described
    assert f"{store['foo.out']}/lib/libfoo.so.1" in maps
    assert f"{store['zlib.out']}/lib/libz.so.1" in maps
    assert f"{store['stdenv.cc.cc.lib']}/lib/libstdc++.so.6" in maps
    assert f"{store['stdenv.cc.cc.lib']}/lib/libgcc_s.so.1" in maps

    # beside each wheel its fragment, which evaluates to exactly the outputs its binaries point at
    fragments = {w: out / (w.name.removesuffix(".whl") + ".nix") for w in (demo, consumer, provider)}
    assert sorted(_eval_fragment(fragments[demo], mini)) == sorted(
        [store["foo.out"], store["zlib.out"], store["glibc.out"]]
    )
    assert _eval_fragment(fragments[consumer], mini) == [store["stdenv.cc.cc.lib"]]
    assert _eval_fragment(fragments[provider], mini) == []
    text = fragments[consumer].read_text()
    assert f"#   pkgs.stdenv.cc.cc.lib = {store['stdenv.cc.cc.lib']}" in text
    assert "pkgs.stdenv.cc.cc.lib # consumer: libgcc_s.so.1, libstdc++.so.6" in text
    # the same choice as `wheelfix nix` (same generator, same data): its list, narrowed to what is used
    nix = run_cli("nix", "--flavor", "plain", "--preferences", prefs, wheels["consumer"], wheels["provider"])
    assert "pkgs.stdenv.cc.cc.lib # consumer: libgcc_s.so.1, libstdc++.so.6" in nix.stdout

    # repairing again changes nothing: the same wheels and fragments, byte for byte
    again = tmp_path / "again"
    proc2 = _repair(
        run_cli, [demo, consumer, provider], again, "--nixpkgs", mini.root, "--preferences", prefs
    )
    assert proc2.returncode == 0, proc2.stderr
    assert "patching 0 of 3 binaries" in proc2.stdout
    for path in (demo, consumer, provider, *fragments.values()):
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name
    # the repaired wheels pass the Nix check: every need is pinned to a store path by the manifest
    assert run_cli("check", demo, consumer, provider).returncode == 0


def test_flake_reference_gives_the_same_repair(
    run_cli: RunCli, wheels: dict[str, Path], mini: MiniNixpkgs, prefs: Path, tmp_path: Path
) -> None:
    by_path, by_flake = tmp_path / "path", tmp_path / "flake"
    a = _repair(run_cli, _three(wheels), by_path, "--nixpkgs", mini.root, "--preferences", prefs, "-q")
    b = _repair(run_cli, _three(wheels), by_flake, "--nixpkgs", mini.flake, "--preferences", prefs, "-q")
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout == ""  # -q: nothing but warnings and errors
    for w in _three(wheels):
        assert (by_flake / w.name).read_bytes() == (by_path / w.name).read_bytes()
        frag = w.name.removesuffix(".whl") + ".nix"
        flake_text = (by_flake / frag).read_text().replace(f"--nixpkgs {mini.flake}", "--nixpkgs REF")
        assert flake_text == (by_path / frag).read_text().replace(f"--nixpkgs {mini.root}", "--nixpkgs REF")


def test_lookup_path_and_flavor(
    run_cli: RunCli, wheels: dict[str, Path], mini: MiniNixpkgs, prefs: Path, tmp_path: Path
) -> None:
    """``<nixpkgs>`` from NIX_PATH; ``--flavor nixpkgs`` writes buildPythonPackage attributes per package."""
    env_cmd: list[str | Path] = [sys.executable, "-m", "wheelfix", "repair"]
    env_cmd += [wheels["consumer"], wheels["provider"], "-o"]
    env_cmd += [tmp_path / "out", "--nixpkgs", "<nixpkgs>", "--preferences", prefs, "--flavor", "nixpkgs"]
    proc = run(env_cmd, env={**nix_env(), "NIX_PATH": f"nixpkgs={mini.root}"})
    assert proc.returncode == 0, proc.stderr
    fragment = tmp_path / "out" / (wheels["consumer"].name.removesuffix(".whl") + ".nix")
    # the nixpkgs flavor: per package a function of the package's own attributes (old: old // { ... }),
    # extending lists with lib.optionals/lib.toList (the two lib functions it uses, given here)
    lib = "{ optionals = c: l: if c then l else [ ]; toList = x: if builtins.isList x then x else [ x ]; }"
    pkgs = f"(import {mini.root} {{ }}) // {{ lib = {lib}; }}"
    expr = f"map (p: p.outPath) ((import {fragment} {{ pkgs = {pkgs}; }}).consumer {{ }}).buildInputs"
    evaluated = run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr], env=nix_env())
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout) == list(_outputs(mini, "stdenv.cc.cc.lib").values())


def test_lib_path_wins_over_the_knowledge_base(
    run_cli: RunCli,
    wheels: dict[str, Path],
    mini: MiniNixpkgs,
    prefs: Path,
    store: dict[str, str],
    tmp_path: Path,
) -> None:
    """A --lib-path that has libz: the binaries point there, and the fragment does not list pkgs.zlib."""
    own = tmp_path / "wheelfix-own-zlib" / "lib"
    own.mkdir(parents=True)
    shutil.copyfile(Path(store["zlib.out"]) / "lib" / "libz.so.1", own / "libz.so.1")
    own_store = nix_add(own.parent) + "/lib"
    out = tmp_path / "out"
    proc = _repair(
        run_cli,
        [wheels["demo"]],
        out,
        "--nixpkgs",
        mini.root,
        "--preferences",
        prefs,
        "--lib-path",
        own_store,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pkgs.zlib" not in proc.stdout  # not even evaluated: nothing is left for it
    with zipfile.ZipFile(out / wheels["demo"].name) as zf:
        manifest = json.loads(zf.read("demo-1.0.dist-info/wheelfix.json"))
    provides = manifest["binaries"][DEMO_EXT]["archs"]["x86_64"]["provides"]
    assert provides == {"libfoo.so.1": f"{store['foo.out']}/lib", "libz.so.1": own_store}
    fragment = out / (wheels["demo"].name.removesuffix(".whl") + ".nix")
    assert sorted(_eval_fragment(fragment, mini)) == sorted([store["foo.out"], store["glibc.out"]])


def test_dry_run_prints_attributes_and_store_paths(
    run_cli: RunCli,
    wheels: dict[str, Path],
    mini: MiniNixpkgs,
    prefs: Path,
    store: dict[str, str],
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    proc = _repair(
        run_cli, [wheels["demo"]], out, "--nixpkgs", mini.root, "--preferences", prefs, "--dry-run"
    )
    assert proc.returncode == 0, proc.stderr
    assert f"pkgs.foo    {store['foo.out']}  (libfoo.so.1)" in proc.stdout
    assert "would patch 2 of 3 binaries" in proc.stdout
    assert f"interpreter /lib64/ld-linux-x86-64.so.2 -> {store['glibc.out']}/lib/ld-linux-x86-64.so.2" in (
        proc.stdout
    )
    assert not out.exists()  # no wheel, no fragment


def test_unknown_need_stops_unless_allowed(
    run_cli: RunCli, wheels: dict[str, Path], mini: MiniNixpkgs, store: dict[str, str], tmp_path: Path
) -> None:
    """With the packaged preferences no package is known for libfoo.so.1: exit 1, listing it; --allow."""
    out = tmp_path / "out"
    proc = _repair(run_cli, [wheels["demo"]], out, "--nixpkgs", mini.root)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert f"missing: libfoo.so.1 needed by {DEMO_EXT}: no known nixpkgs package" in lines
    assert lines[-1].startswith(f"repair stopped, nothing written: {mini.root} does not provide these")
    assert not out.exists()
    allowed = _repair(run_cli, [wheels["demo"]], out, "--nixpkgs", mini.root, "--allow", "libfoo.so.1")
    assert allowed.returncode == 0, allowed.stderr
    fragment = out / (wheels["demo"].name.removesuffix(".whl") + ".nix")
    assert sorted(_eval_fragment(fragment, mini)) == sorted([store["zlib.out"], store["glibc.out"]])


def test_attribute_that_nixpkgs_lacks_is_named(
    run_cli: RunCli, wheels: dict[str, Path], mini: MiniNixpkgs, tmp_path: Path
) -> None:
    prefs = _prefs(tmp_path, "libfoo.so.1\tnixpkgs\tnosuch.thing\tlib\tnone\t-\tnot in the stub\ttests")
    out = tmp_path / "out"
    proc = _repair(run_cli, [wheels["demo"]], out, "--nixpkgs", mini.root, "--preferences", prefs)
    assert proc.returncode == 2, proc.stderr
    assert "pkgs.nosuch.thing.lib (for libfoo.so.1): no such output in" in proc.stderr
    assert not out.exists()
    # allowed: the repair goes on without it
    proc = _repair(
        run_cli, [wheels["demo"]], out, "--nixpkgs", mini.root, "--preferences", prefs, "--allow", "libfoo*"
    )
    assert proc.returncode == 0, proc.stderr
    assert "pkgs.nosuch.thing.lib" in proc.stdout and "does not evaluate" in proc.stdout


def test_package_that_does_not_build_is_named(
    run_cli: RunCli, wheels: dict[str, Path], mini: MiniNixpkgs, tmp_path: Path
) -> None:
    prefs = _prefs(tmp_path, "libfoo.so.1\tnixpkgs\tbroken\tout\tnone\t-\tfails to build\ttests")
    proc = _repair(
        run_cli, [wheels["demo"]], tmp_path / "out", "--nixpkgs", mini.root, "--preferences", prefs
    )
    assert proc.returncode == 2
    assert "nix-store --realise could not build pkgs.broken (" in proc.stderr
    assert "this package fails to build" in proc.stderr or "builder for" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_api_seam_returns_outputs_and_lib_dirs(
    wheels: dict[str, Path], mini: MiniNixpkgs, prefs: Path, store: dict[str, str]
) -> None:
    """``wheelfix.nixpkgs_libraries``: what ``repair --in-place`` reuses -- the chosen outputs, their store
    paths and lib directories; ``plan_repair(nixpkgs=...)`` then plans against them."""
    analysis = wheelfix.inspect(_three(wheels))
    events: list[wheelfix.ProgressEvent] = []
    libs = wheelfix.nixpkgs_libraries(analysis, str(mini.root), preferences=prefs, progress=events.append)
    assert [(e.phase, e.done, e.total) for e in events] == [
        (wheelfix.Phase.EVALUATE, 0, 4),
        (wheelfix.Phase.EVALUATE, 4, 4),
        (wheelfix.Phase.REALISE, 0, 4),
        (wheelfix.Phase.REALISE, 4, 4),
    ]
    got = {o.nix: (o.store_path, o.lib_dirs, o.needs) for o in libs.outputs}
    assert got == {
        "pkgs.foo": (store["foo.out"], (store["foo.out"] + "/lib",), ("libfoo.so.1",)),
        "pkgs.glibc": (store["glibc.out"], (store["glibc.out"] + "/lib",), ("ld-linux-x86-64.so.2",)),
        "pkgs.stdenv.cc.cc.lib": (
            store["stdenv.cc.cc.lib"],
            (store["stdenv.cc.cc.lib"] + "/lib",),
            ("libgcc_s.so.1", "libstdc++.so.6"),
        ),
        "pkgs.zlib": (store["zlib.out"], (store["zlib.out"] + "/lib",), ("libz.so.1",)),
    }
    plans = wheelfix.plan_repair(analysis, nixpkgs=libs)
    assert all(p.complete for p in plans)


def test_renamed_attribute_falls_back_to_its_old_name(tmp_path: Path) -> None:
    """A nixpkgs from before the X.org move has ``xorg.libX11``, not ``libx11``: evaluation falls back to the
    old name, as the fragments' ``(pkgs.libx11 or pkgs.xorg.libX11)`` does."""
    require_tool("nix-instantiate")
    (tmp_path / "default.nix").write_text(
        '{ ... }: { xorg.libX11.out.outPath = "/nix/store/00000000000000000000000000000000-libX11-1.8"; }'
    )
    from wheelfix.nixkb.kb import Candidate
    from wheelfix.nixkb.storepaths import resolve_store_paths

    got = resolve_store_paths(
        str(tmp_path), [Candidate("libx11", "out", None), Candidate("nope", "out", None)]
    )
    assert got == {
        Candidate("libx11", "out", None): "/nix/store/00000000000000000000000000000000-libX11-1.8",
        Candidate("nope", "out", None): None,
    }


def test_in_place_repair_of_a_venv_with_nixpkgs(
    run_cli: RunCli,
    wheels: dict[str, Path],
    mini: MiniNixpkgs,
    prefs: Path,
    store: dict[str, str],
    tmp_path: Path,
) -> None:
    """``repair --in-place VENV --nixpkgs REF``: the seam from the installed-environment side."""
    venv = fresh_venv(tmp_path / "venv", _three(wheels))
    assert _import(_site(venv)).returncode != 0  # libfoo.so.1 is nowhere
    proc = run_cli("repair", "--in-place", venv, "--nixpkgs", mini.root, "--preferences", prefs)
    assert proc.returncode == 0, proc.stderr
    assert re.search(rf"  pkgs\.foo +{store['foo.out']}  \(libfoo\.so\.1\)", proc.stdout), proc.stdout
    ok = _import(_site(venv))
    assert ok.returncode == 0, ok.stderr
    assert f"{store['foo.out']}/lib/libfoo.so.1" in ok.stdout
    assert f"{store['stdenv.cc.cc.lib']}/lib/libstdc++.so.6" in ok.stdout
