"""wheelfix.env on small real environments: what kind a directory is, the interpreter (a missing loader is
one finding with the nix-ld answer), distributions through RECORD and the files no RECORD lists (editable
installs, with ``$ORIGIN`` real), RECORD rewriting, and the in-place repair's all-or-nothing rule."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

import wheelfix
from wheelfix.analysis.model import Outcome
from wheelfix.env.layout import EnvKind, find_layout, read_pyvenv_cfg
from wheelfix.env.record import record_hash, rewrite_record
from wheelfix.errors import BadInput
from wheelfix.render.jsondoc import inspect_document, load_schema

from tests.support.cli import RunCli, fresh_venv
from tests.support.prereq import require_tool

DEMO_EXT = "demo/_demo.cpython-311-x86_64-linux-gnu.so"


@pytest.fixture(scope="module")
def demo_venv(wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_venv(tmp_path_factory.mktemp("env-unit") / "venv", [wheels["demo"], wheels["provider"]])


def site_of(venv: Path) -> Path:
    (site,) = venv.glob("lib/python3*/site-packages")
    return site


def copy_venv(venv: Path, where: Path) -> Path:
    shutil.copytree(venv, where, symlinks=True)
    return where


# --- layout ------------------------------------------------------------------------------------------------


def test_layout_kinds(demo_venv: Path, tmp_path: Path) -> None:
    site = site_of(demo_venv)
    venv = find_layout(demo_venv)
    assert venv.kind is EnvKind.VENV and venv.prefix == str(demo_venv) and venv.python_version == "3.11"
    assert venv.site_packages == (str(site),)
    # its site-packages directory is read as the venv (whose interpreter is known)
    assert find_layout(site).kind is EnvKind.VENV
    # a prefix: lib/pythonX.Y/site-packages without pyvenv.cfg
    prefix = tmp_path / "prefix"
    shutil.copytree(demo_venv / "lib", prefix / "lib", symlinks=True)
    assert find_layout(prefix).kind is EnvKind.PREFIX
    # a `pip install --target` directory: *.dist-info, no layout around it
    target = tmp_path / "target"
    shutil.copytree(site, target, symlinks=True)
    bare = find_layout(target)
    assert bare.kind is EnvKind.SITE_PACKAGES and bare.site_packages == (str(target),)
    with pytest.raises(BadInput, match="not a wheel, a venv"):
        find_layout(tmp_path / "target" / "demo")


def test_pyvenv_cfg_of_each_creator(tmp_path: Path) -> None:
    cfg = tmp_path / "pyvenv.cfg"
    cfg.write_text("home = /opt/py/bin\nimplementation = CPython\nuv = 0.13.9\nversion_info = 3.12.4\n")
    uv = read_pyvenv_cfg(cfg)
    assert (uv.home, uv.version, uv.creator, uv.executable) == ("/opt/py/bin", "3.12.4", "uv 0.13.9", None)
    cfg.write_text(
        "home = /usr/bin\ninclude-system-site-packages = true\nversion = 3.11.2\n"
        "executable = /usr/bin/python3.11\ncommand = /usr/bin/python3 -m venv /x\n"
    )
    venv = read_pyvenv_cfg(cfg)
    assert (venv.creator, venv.executable, venv.include_system_site_packages) == (
        "python -m venv",
        "/usr/bin/python3.11",
        True,
    )


# --- the interpreter --------------------------------------------------------------------------------------


def fake_interpreter(where: Path, loader: str) -> Path:
    """An executable standing in for python3.11 whose PT_INTERP is ``loader``."""
    gcc = require_tool("gcc")
    where.mkdir(parents=True, exist_ok=True)
    src = where / "main.c"
    src.write_text("int main(void) { return 0; }\n")
    out = where / "bin" / "python3.11"
    out.parent.mkdir(parents=True)
    subprocess.run([gcc, "-o", str(out), str(src), f"-Wl,--dynamic-linker={loader}"], check=True)
    return out


def test_missing_loader_is_one_finding_with_the_nix_ld_answer(
    demo_venv: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    """A uv-downloaded interpreter on NixOS: not in the store, its loader absent. Said once, first."""
    venv = copy_venv(demo_venv, tmp_path / "venv")
    python = fake_interpreter(tmp_path / "standalone", "/lib64/ld-wheelfix-absent-x86-64.so.2")
    (venv / "pyvenv.cfg").write_text(f"home = {python.parent}\nuv = 0.13.9\nversion_info = 3.11.9\n")
    env = wheelfix.inspect_env(venv)
    interp = env.interpreter
    assert interp is not None and interp.real_path == str(python)
    assert interp.cannot_start and not interp.in_store and not interp.loader_present

    report = run_cli("inspect", venv)
    assert report.returncode == 0, report.stderr
    assert report.stdout.count("CANNOT START") == 1
    assert "programs.nix-ld" in report.stdout and "--flavor nix-ld" in report.stdout
    assert "libraries nix-ld must provide:\n  demo 1.0: libz.so.1 -> pkgs.zlib" in report.stdout

    result = wheelfix.check_env(env)
    assert result.findings[0].code == "interpreter-loader"
    assert result.findings[0].soname == "ld-wheelfix-absent-x86-64.so.2"
    assert [f.code for f in result.findings].count("interpreter-loader") == 1
    assert not result.passed
    checked = run_cli("check", venv)
    first, second = checked.stdout.splitlines()[:2]
    assert checked.returncode == 1 and first == f"{venv}: 1 errors, 0 warnings", checked.stdout
    assert second.startswith("  error: [interpreter-loader]") and "nix-ld" in checked.stdout


def test_the_real_interpreter(demo_venv: Path) -> None:
    env = wheelfix.inspect_env(demo_venv)
    interp = env.interpreter
    assert interp is not None and interp.problem is None
    assert interp.loader_present and not interp.cannot_start
    if interp.libpython is not None:  # a shared-libpython build (pyenv's): found on its own search path
        assert interp.libpython_path is not None and Path(interp.libpython_path).is_file()


# --- distributions, unrecorded files, the real tree ---------------------------------------------------------


def test_distributions_resolve_on_the_real_tree(demo_venv: Path) -> None:
    env = wheelfix.inspect_env(demo_venv)
    assert sorted(d.name for d in env.distributions) == ["demo", "provider"]
    (demo,) = [w for w in env.analysis.wheels if w.scan.meta.name == "demo"]
    assert demo.scan.meta.filename == "demo-1.0.dist-info"
    (ext,) = [b for b in demo.elf if b.binary.member == DEMO_EXT]
    runpath = ext.search_path[0]
    assert runpath.path == str(site_of(demo_venv) / "demo.libs")  # $ORIGIN is real here
    libbar = next(n for n in ext.needs if n.soname.startswith("libbar"))
    assert libbar.resolution.outcome is Outcome.BUNDLED and libbar.resolution.reachable
    assert {n.soname: n.resolution.outcome for n in ext.needs}["libz.so.1"] is Outcome.MANYLINUX
    tool = next(b for b in demo.elf if b.binary.member.endswith("bin/demo-tool"))
    assert tool.binary.member == "../../../bin/demo-tool"  # the RECORD path
    # its DT_RPATH $ORIGIN/../lib/python3.11/site-packages/demo.libs reaches libbar through the real tree
    assert all(n.resolution.outcome is not Outcome.UNRESOLVED for n in tool.needs if n.required)


def test_editable_and_hand_added_binaries_are_reported_as_unrecorded(
    demo_venv: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    venv = copy_venv(demo_venv, tmp_path / "venv")
    site = site_of(venv)
    project = tmp_path / "project" / "src"  # an editable install's tree, added by a .pth file
    (project / "mine").mkdir(parents=True)
    shutil.copy(site / DEMO_EXT, project / "mine" / "_demo.cpython-311-x86_64-linux-gnu.so")
    shutil.copytree(site / "demo.libs", project / "demo.libs")
    (site / "__editable__.mine-0.1.pth").write_text(f"{project}\n")
    (site / "extra").mkdir()
    shutil.copy(site / "demo.libs" / os.listdir(site / "demo.libs")[0], site / "extra" / "libhand.so")
    env = wheelfix.inspect_env(venv)
    assert sorted(env.unrecorded) == sorted(
        [
            str(project / "demo.libs" / os.listdir(project / "demo.libs")[0]),
            str(project / "mine" / "_demo.cpython-311-x86_64-linux-gnu.so"),
            str(site / "extra" / "libhand.so"),
        ]
    )
    (unrecorded,) = [w for w in env.analysis.wheels if env.owner(w) is None]
    ext = next(b for b in unrecorded.elf if b.binary.member.endswith("_demo.cpython-311-x86_64-linux-gnu.so"))
    libbar = next(n for n in ext.needs if n.soname.startswith("libbar"))
    assert libbar.resolution.reachable and libbar.resolution.via == "RUNPATH $ORIGIN/../demo.libs"
    report = run_cli("inspect", venv)
    assert "(not in any RECORD) (3 binaries): libz.so.1 -> pkgs.zlib" in report.stdout


def test_json_document_follows_the_inspect_schema(demo_venv: Path, run_cli: RunCli) -> None:
    proc = run_cli("inspect", "--json", demo_venv)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, load_schema("inspect"))
    assert doc == json.loads(json.dumps(inspect_document(wheelfix.inspect_env(demo_venv).analysis)))


def test_missing_recorded_files_are_a_warning(demo_venv: Path, tmp_path: Path, run_cli: RunCli) -> None:
    venv = copy_venv(demo_venv, tmp_path / "venv")
    (site_of(venv) / "demo" / "__init__.py").unlink()
    proc = run_cli("inspect", venv)
    assert proc.returncode == 0
    assert "RECORD: lists 1 files that are not there: demo/__init__.py" in proc.stderr


def test_cli_refuses_mixed_and_misplaced_inputs(
    demo_venv: Path, wheels: dict[str, Path], tmp_path: Path, run_cli: RunCli
) -> None:
    mixed = run_cli("inspect", demo_venv, wheels["demo"])
    assert mixed.returncode == 2 and "give one installed environment" in mixed.stderr
    assert run_cli("repair", demo_venv).returncode == 2  # neither -o nor --in-place
    wheel_in_place = run_cli("repair", "--in-place", wheels["demo"])
    assert wheel_in_place.returncode == 2 and "not wheels" in wheel_in_place.stderr
    env_copy = run_cli("repair", demo_venv, "-o", tmp_path / "out")
    assert env_copy.returncode == 2 and "--in-place" in env_copy.stderr


# --- RECORD ------------------------------------------------------------------------------------------------


def test_record_rows_rewritten_in_place_with_their_line_endings() -> None:
    pip_style = b"a/x.so,sha256=old,10\r\na/y.py,sha256=keep,3\r\nd.dist-info/RECORD,,\r\n"
    new = rewrite_record(
        pip_style, {"a/x.so": ("sha256=new", 12), "d.dist-info/wheelfix.json": ("sha256=m", 5)}
    )
    assert new == (
        b"a/x.so,sha256=new,12\r\na/y.py,sha256=keep,3\r\nd.dist-info/RECORD,,\r\n"
        b"d.dist-info/wheelfix.json,sha256=m,5\r\n"
    )
    uv_style = b'a/x.so,sha256=old,10\n"a/with,comma.py",sha256=k,1\nd.dist-info/RECORD,,'
    assert rewrite_record(uv_style, {"a/with,comma.py": ("sha256=n", 2)}) == (
        b'a/x.so,sha256=old,10\n"a/with,comma.py",sha256=n,2\nd.dist-info/RECORD,,\n'
    )
    digest = hashlib.sha256(b"x").digest()
    assert record_hash(digest) == "sha256=" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


# --- the in-place repair: all or nothing -------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_nothing_changes_when_a_file_changed_since_it_was_inspected(
    demo_venv: Path, tmp_path: Path, libfoo_dirs: list[Path]
) -> None:
    venv = copy_venv(demo_venv, tmp_path / "venv")
    env = wheelfix.inspect_env(venv)
    before = snapshot(venv)
    tool = venv / "bin" / "demo-tool"
    st = tool.stat()
    os.utime(tool, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touched after the scan
    with pytest.raises(BadInput, match="changed since it was inspected"):
        wheelfix.repair_env(env, lib_paths=libfoo_dirs)
    assert snapshot(venv) == before  # the extension, staged first, was not replaced
    assert not [p for p in venv.rglob("*.wheelfix")]  # no temp file left


def test_incomplete_plan_changes_nothing(demo_venv: Path, tmp_path: Path) -> None:
    venv = copy_venv(demo_venv, tmp_path / "venv")
    before = snapshot(venv)
    with pytest.raises(wheelfix.RepairIncomplete, match=r"libfoo\.so\.1"):
        wheelfix.repair_env(venv, lib_paths=[])
    assert snapshot(venv) == before


def test_api_repair_then_dry_run_and_second_run_change_nothing(
    demo_venv: Path, tmp_path: Path, libfoo_dirs: list[Path]
) -> None:
    venv = copy_venv(demo_venv, tmp_path / "venv")
    before = snapshot(venv)
    dry = wheelfix.repair_env(venv, lib_paths=libfoo_dirs, dry_run=True)
    assert dry.dry_run and not dry.changed and any(p.changes for p in dry.plans)
    assert snapshot(venv) == before
    done = wheelfix.repair_env(venv, lib_paths=libfoo_dirs)
    assert sorted(f.member for f in done.changed) == ["../../../bin/demo-tool", DEMO_EXT]
    assert all(f.matched_record for f in done.changed)
    site = site_of(venv)
    assert sorted(done.metadata) == [
        str(site / "demo-1.0.dist-info" / n) for n in ("RECORD", "wheelfix.json")
    ]
    manifest = json.loads((site / "demo-1.0.dist-info" / "wheelfix.json").read_text())
    assert set(manifest["binaries"]) == {"../../../bin/demo-tool", DEMO_EXT}
    after = snapshot(venv)
    again = wheelfix.repair_env(venv, lib_paths=libfoo_dirs)
    assert not again.changed and snapshot(venv) == after


@pytest.fixture(scope="module")
def libfoo_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Directories with libfoo.so.1, libz.so.1 and the loader (plain directories: the API takes any)."""
    from tests.support import synthetic

    root = tmp_path_factory.mktemp("env-libs")
    synthetic.build_libfoo(root / "foo")
    (root / "z").mkdir()
    shutil.copy(Path("/usr/lib/x86_64-linux-gnu/libz.so.1").resolve(), root / "z" / "libz.so.1")
    (root / "ld").mkdir()
    shutil.copy(Path("/lib64/ld-linux-x86-64.so.2").resolve(), root / "ld" / "ld-linux-x86-64.so.2")
    return [root / "foo", root / "z", root / "ld"]
