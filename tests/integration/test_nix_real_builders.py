"""End to end through the real Python builders (issue 17, Deliver 2), on the stdenv of nixpkgs' real files.

* uv2nix: a workspace whose uv.lock (written here by PyPI's uv 0.13, offline) takes every package from a
  local wheel file, loaded by the real uv2nix, built by the real pyproject.nix builders (their wheel-dist
  and install hooks; the install hook runs that uv) with nixpkgs' real autoPatchelf script, and gathered
  into a virtual environment by pyproject.nix's venv hook. With the overlay ``wheelfix nix --flavor
  uv2nix`` generates, unedited: a package whose library comes from a sibling wheel (consumer needs
  provider's libprov.so.1), one whose extension dlopen()s a store library (dlz: libzstd.so.1), one with
  a bundled library and a nixpkgs one (wheelfix_example). With ``lib.uv2nixOverrides`` and wheelfixHook
  instead: the same sibling case, and an extension that dlopen()s a library only the hook's inputs have.
* nixpkgs' ``buildPythonPackage { format = "wheel"; }`` (the real mk-python-derivation.nix: wheelUnpackHook,
  pypaInstallHook running PyPI's installer, pythonImportsCheckHook, the catch-conflicts and dist hooks)
  with wheelfixHook.
* poetry2nix: its real default overrides, extended with the fragment ``wheelfix nix --flavor poetry2nix``
  generates for torch-, nvidia-*- and numba-like wheels and plain ones, evaluated strictly (drvPath and the
  merged attributes): poetry2nix sets ``autoPatchelfIgnoreMissingDeps = true`` for torch and
  ``old.src.isWheel or false`` for numba.

Every build ends in an import in a clean interpreter: the environment's own python (uv2nix), or ``python
-I -S`` with only the output's site-packages on sys.path. What stays a stub is listed in
tests/nix/stub-nixpkgs/pkgs.nix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import realnix
from tests.support import synthetic as generate
from tests.support.paths import REPO as ROOT
from tests.support.prereq import require_tool
from tests.support.realnix import built_path, clean_import, nix_build, search_path

PY = "lib/python3.11/site-packages"


@dataclass
class Env:
    root: Path
    sources: Path
    stub: Path
    wheels: dict[str, Path]
    dlonly: str
    uv: Path

    def pkgs(self) -> str:
        return realnix.pkgs_expr(self.stub, self.sources)

    def prelude(self) -> str:
        return f"""
  nonce = "{uuid.uuid4()}";
  pkgs = {self.pkgs()};
  inherit (pkgs) lib;
  S = builtins.path {{ path = {self.sources}; name = "source"; }};
  wheelfix = pkgs.callPackage {ROOT}/nix/package.nix {{ }};
  wheelfixHook = pkgs.callPackage {ROOT}/nix/hook.nix {{ inherit wheelfix; }};
  dlonly = builtins.storePath "{self.dlonly}";
  pyproject-nix = import "${{S}}/pyproject.nix" {{ inherit lib; }};
  uv2nix = import "${{S}}/uv2nix" {{ inherit lib pyproject-nix; }};
"""

    def workspace(self, name: str, projects: list[str]) -> Path:
        """A uv workspace taking each project from its wheel (path sources), locked offline by uv."""
        ws = self.root / name
        (ws / "wheels").mkdir(parents=True)
        deps, sources = [], []
        for project in projects:
            wheel = self.wheels[project]
            shutil.copyfile(wheel, ws / "wheels" / wheel.name)
            deps.append(json.dumps(project))
            sources.append(f'{project} = {{ path = "wheels/{wheel.name}" }}')
        (ws / "pyproject.toml").write_text(
            "[project]\n"
            'name = "app"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
            f"dependencies = [{', '.join(deps)}]\n\n"
            "[tool.uv]\npackage = false\n\n"
            "[tool.uv.sources]\n" + "\n".join(sources) + "\n"
        )
        host = realnix.host_values()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "UV_PYTHON": host["basePython"],
            "UV_NO_CACHE": "1",
            "UV_PYTHON_DOWNLOADS": "never",
        }
        locked = subprocess.run(
            [self.uv, "lock", "--offline"], cwd=ws, env=env, capture_output=True, text=True, check=False
        )
        assert locked.returncode == 0, locked.stderr
        assert "revision = 5" in (ws / "uv.lock").read_text()
        return ws


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path]) -> Env:
    require_tool("nix-build")
    root = tmp_path_factory.mktemp("realbuilders")
    sources = realnix.nix_sources()
    stub = realnix.stub_nixpkgs(root / "stub", with_wheels=True)
    built = root / "wheels"
    built.mkdir()
    ours = {
        "dlz": realnix.dl_wheel(built, "dlz", "libzstd.so.1"),
        "dlmod": realnix.dl_wheel(built, "dlmod", "libdlonly.so.1"),
    }
    dlonly = realnix.nix_store_add(realnix.build_dlonly(root / "wheelfix-test-dlonly"))
    with zipfile.ZipFile(realnix.pypi_wheel(realnix.UV)) as zf:
        (member,) = (n for n in zf.namelist() if n.endswith(".data/scripts/uv"))
        uv = root / "uv"
        uv.write_bytes(zf.read(member))
    uv.chmod(0o755)
    mapped = {
        "provider": wheels["provider"],
        "consumer": wheels["consumer"],
        "wheelfix-example": wheels["example"],
        "demo": wheels["demo"],
        **ours,
    }
    return Env(root, sources, stub, mapped, dlonly, uv)


def wheelfix_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return realnix.run([realnix.host_values()["python"], "-m", "wheelfix", *map(str, args)])


def env_python(venv: Path, code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in the environment's own interpreter, nothing inherited."""
    return subprocess.run(
        [venv / "bin" / "python", "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={},
        timeout=120,
    )


# --- uv2nix / pyproject.nix ---------------------------------------------------------------------------


def test_uv2nix_workspace_builds_with_the_generated_overlay_unedited(env: Env) -> None:
    ws = env.workspace("ws-fragment", ["consumer", "provider", "dlz", "wheelfix-example"])
    fragment = ws / "wheelfix.nix"
    made = wheelfix_cli("nix", *sorted((ws / "wheels").glob("*.whl")), "--flavor", "uv2nix", "-o", fragment)
    assert made.returncode == 0, made.stderr
    text = fragment.read_text()
    assert "final.provider # libprov.so.1" in text  # the sibling wheel, as code
    expr = f"""
let
{env.prelude()}
  workspace = uv2nix.lib.workspace.loadWorkspace {{ workspaceRoot = {ws}; }};
  overlay = workspace.mkPyprojectOverlay {{ sourcePreference = "wheel"; }};
  # built anew each time: the test reads the build log
  fresh = final: prev: lib.genAttrs [ "consumer" "provider" "dlz" "wheelfix-example" ] (
    name: prev.${{name}}.overrideAttrs {{ inherit nonce; }}
  );
  pythonSet = (pkgs.callPackage pyproject-nix.build.packages {{ python = pkgs.python3; }}).overrideScope (
    lib.composeManyExtensions [ overlay fresh (import {fragment} {{ inherit pkgs; }}) ]
  );
in
pythonSet.mkVirtualEnv "wheelfix-uv2nix-env" workspace.deps.default
"""
    proc = nix_build(expr)
    venv = built_path(proc)
    log = proc.stderr
    assert "Executing pyprojectWheelDist" in log and "Executing pyprojectInstallPhase" in log
    assert "auto-patchelf: 0 dependencies could not be satisfied" in log
    code = (
        "import consumer, dlz, wheelfix_example; "
        "print(consumer.describe()); print(dlz.where()); print(wheelfix_example.value())"
    )
    ran = env_python(venv, code)
    assert ran.returncode == 0, ran.stderr
    describe, where, value = ran.stdout.split()
    assert describe == "prov=3" and value == "11"
    assert where.startswith("/nix/store/") and where.endswith("-zstd-host/lib/libzstd.so.1")
    # consumer's extension points at provider's store path (the sibling wheel's package)
    consumer_ext = next((venv / PY / "consumer").glob("_consumer*.so")).resolve()
    _kind, value_ = search_path(consumer_ext) or ("", "")
    assert any(d.endswith(f"-provider-2.0/{PY}/provider/lib") for d in value_.split(":")), value_


def test_uv2nix_overrides_helper_and_the_hook_in_a_uv2nix_set(env: Env) -> None:
    """No fragment: lib.uv2nixOverrides wires consumer's dependency provider (passthru.dependencies) into
    its inputs and autoPatchelf's search path; dlmod gets wheelfixHook instead of autoPatchelf, and its
    dlopen()ed store library survives uv2nix's build through fixupPhase (which does not set dontPatchELF)."""
    ws = env.workspace("ws-helper", ["consumer", "provider", "dlmod"])
    expr = f"""
let
{env.prelude()}
  workspace = uv2nix.lib.workspace.loadWorkspace {{ workspaceRoot = {ws}; }};
  overlay = workspace.mkPyprojectOverlay {{ sourcePreference = "wheel"; }};
  hooked = final: prev: {{
    dlmod = prev.dlmod.overrideAttrs (old: {{
      nativeBuildInputs = old.nativeBuildInputs ++ [ wheelfixHook ];
      buildInputs = (old.buildInputs or [ ]) ++ [ dlonly ];
      dontAutoPatchelf = true;
      inherit nonce;
    }});
  }};
  pythonSet = (pkgs.callPackage pyproject-nix.build.packages {{ python = pkgs.python3; }}).overrideScope (
    lib.composeManyExtensions [ overlay (import {ROOT}/nix/uv2nix-overrides.nix {{ }}) hooked ]
  );
in
pythonSet.mkVirtualEnv "wheelfix-uv2nix-hook-env" workspace.deps.default
"""
    proc = nix_build(expr)
    venv = built_path(proc)
    assert "wheelfixVerifyPhase: 1 installed binaries keep the search paths wheelfix wrote" in proc.stderr
    ran = env_python(venv, "import consumer, dlmod; print(consumer.describe()); print(dlmod.where())")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["prov=3", f"{env.dlonly}/lib/libdlonly.so.1"]


# --- nixpkgs' buildPythonPackage ------------------------------------------------------------------------


def test_build_python_package_format_wheel_with_the_hook(env: Env, tmp_path: Path) -> None:
    generate.build_libfoo(tmp_path / "wheelfix-test-foo" / "lib")
    foo = realnix.nix_store_add(tmp_path / "wheelfix-test-foo")
    expr = f"""
let
{env.prelude()}
  py = pkgs.python3.pkgs;
  foo = builtins.storePath "{foo}";
in
{{
  dlmod = py.buildPythonPackage {{
    pname = "dlmod";
    version = "1.0";
    format = "wheel";
    src = {env.wheels["dlmod"]};
    nativeBuildInputs = [ wheelfixHook ];
    buildInputs = [ dlonly ];
    pythonImportsCheck = [ "dlmod" ];
    dontStrip = true;
    inherit nonce;
  }};
  demo = py.buildPythonPackage {{
    pname = "demo";
    version = "1.0";
    format = "wheel";
    src = {env.wheels["demo"]};
    nativeBuildInputs = [ wheelfixHook ];
    buildInputs = [ foo pkgs.zlib ];
    pythonImportsCheck = [ "demo" ];
    dontStrip = true;
    inherit nonce;
  }};
}}
"""
    proc = nix_build(expr)
    assert proc.returncode == 0, proc.stderr[-6000:]
    outs = proc.stdout.split()  # each package has out and dist (format = "wheel")
    (dlmod,) = (Path(p) for p in outs if p.endswith("-python3.11-dlmod-1.0"))
    (demo,) = (Path(p) for p in outs if p.endswith("-python3.11-demo-1.0"))
    deriver = realnix.run(["nix-store", "-q", "--deriver", dlmod]).stdout.strip()
    outputs = realnix.run(["nix-store", "-q", "--outputs", deriver]).stdout.split()
    (dist,) = (Path(p) for p in outputs if p.endswith("-dist"))
    assert [w.name for w in dist.iterdir()] == [env.wheels["dlmod"].name]  # the repaired wheel
    log = proc.stderr
    for line in (
        "Executing wheelUnpackPhase",
        "Executing pypaInstallPhase",
        "Executing pythonImportsCheckPhase",
    ):
        assert line in log, line
    assert "shrinking RPATHs" not in log
    # dlmod: the dlopen()ed store library, found after the whole build
    ran = clean_import(dlmod / PY, "import dlmod; print(dlmod.where())")
    assert ran.stdout.strip() == f"{env.dlonly}/lib/libdlonly.so.1", ran.stderr
    # demo: libfoo and libz from the store; demo-tool kept its DT_RPATH and got the store loader
    ran = clean_import(demo / PY, "import demo; print(demo.value(), demo.zlib_version())")
    assert ran.returncode == 0, ran.stderr
    tool = demo / "bin" / "demo-tool"
    assert (search_path(tool) or ("",))[0] == "RPATH"
    loader = realnix.interpreter(tool)
    assert loader is not None and loader.startswith("/nix/store/") and "-glibc-host/lib/" in loader
    # run through its loader: installer makes it executable only when the zip mode says S_IFREG, which
    # the synthetic wheels do not (testdata/wheels/generate.py writes 0o755 alone)
    ran_tool = subprocess.run([loader, tool], capture_output=True, text=True, check=False)
    assert ran_tool.stdout.strip() == "7", ran_tool.stderr
    refs = realnix.run(["nix-store", "-q", "--references", demo]).stdout.split()
    assert foo in refs


# --- poetry2nix -----------------------------------------------------------------------------------------

COMPOSE = """
{ numbaIsWheel ? true, fragmentFile }:
let
PRELUDE
  poetry2nix = import "${S}/poetry2nix" { inherit pkgs lib; };
  # as poetry2nix's mkPoetryPackages applies `overrides`
  getFunctorFn = fn: if builtins.typeOf fn == "set" then fn.__functor else fn;
  overlay = getFunctorFn (poetry2nix.defaultPoetryOverrides.extend (import fragmentFile { inherit pkgs; }));
  py = pkgs.python3.pkgs;
  # what poetry2nix's mk-poetry-dep makes of a locked manylinux wheel
  dep = pname: extra: py.buildPythonPackage ({
    inherit pname;
    version = "1.0";
    format = "wheel";
    src = WHEEL;
    nativeBuildInputs = [ pkgs.autoPatchelfHook ];
    buildInputs = pkgs.pythonManylinuxPackages.manylinux2014;
    dontStrip = true;
    passthru = { };
  } // extra);
  base = self: {
    inherit (py) python;
    torch = dep "torch" { };
    nvidia-cudnn-cu12 = dep "nvidia-cudnn-cu12" { };
    nvidia-cuda-runtime-cu12 = dep "nvidia-cuda-runtime-cu12" { };
    numba = dep "numba" { src = { outPath = "${WHEEL}"; isWheel = numbaIsWheel; }; };
    numpy = dep "numpy" { };
    packaging = dep "packaging" { };
    purepkg = dep "purepkg" { };
    wheelfix-example = dep "wheelfix-example" { };
    nvidia-cublas-cu12 = dep "nvidia-cublas-cu12" { };
  };
  final = lib.fix (lib.extends overlay base);
  show = drv: {
    inherit (drv) drvPath;
    buildInputs = map (d: d.name) (drv.buildInputs or [ ]);
    propagatedBuildInputs = map (d: d.name) (drv.propagatedBuildInputs or [ ]);
    nativeBuildInputs = map (d: d.name) (drv.nativeBuildInputs or [ ]);
    autoPatchelfIgnoreMissingDeps = drv.autoPatchelfIgnoreMissingDeps or null;
    preFixup = drv.preFixup or "";
  };
in
lib.genAttrs [ "torch" "nvidia-cudnn-cu12" "numba" "purepkg" "wheelfix-example" ] (n: show final.${n})
"""


@dataclass
class Poetry:
    with_wheels: Path  # the fragment for the set with the nvidia-* wheels given to `wheelfix nix`
    without: Path  # the same without them: cudaPackages
    compose: Path


@pytest.fixture(scope="module")
def poetry(env: Env) -> Poetry:
    """Fragments for torch-, nvidia-cudnn- and numba-like wheels and plain ones, and the composition."""
    d = env.root / "poetry"
    d.mkdir()
    wheels = [
        realnix.needs_wheel(d, "torch", ["libcudart.so.12", "libcublas.so.12", "libcuda.so.1", "libz.so.1"]),
        realnix.needs_wheel(
            d, "nvidia-cudnn-cu12", ships={"nvidia/cudnn/lib/libcudnn.so.9": ["libcublasLt.so.12"]}
        ),
        realnix.needs_wheel(d, "numba", ["libcuda.so.1", "libstdc++.so.6"]),
        env.wheels["wheelfix-example"],
        generate.build_wheel("pure", d),
    ]
    nvidia = [
        realnix.needs_wheel(
            d,
            "nvidia-cublas-cu12",
            ships={"nvidia/cublas/lib/libcublas.so.12": [], "nvidia/cublas/lib/libcublasLt.so.12": []},
        ),
        realnix.needs_wheel(
            d, "nvidia-cuda-runtime-cu12", ships={"nvidia/cuda_runtime/lib/libcudart.so.12": []}
        ),
    ]
    fragments = []
    for name, given in (("with-nvidia.nix", [*wheels, *nvidia]), ("without-nvidia.nix", wheels)):
        made = wheelfix_cli("nix", *given, "--flavor", "poetry2nix", "-o", d / name)
        assert made.returncode == 0, made.stderr
        fragments.append(d / name)
    compose = d / "compose.nix"
    compose.write_text(
        COMPOSE.replace("PRELUDE", env.prelude()).replace("WHEEL", str(env.wheels["wheelfix-example"]))
    )
    return Poetry(fragments[0], fragments[1], compose)


def compose(poetry: Poetry, fragment: Path, **args: bool) -> Any:
    extra = [a for k, v in args.items() for a in ("--arg", k, "true" if v else "false")]
    base = ["nix-instantiate", "--read-write-mode", "--eval", "--strict", "--json", poetry.compose]
    proc = realnix.run([*base, "--arg", "fragmentFile", fragment, *extra])
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


def test_poetry2nix_default_overrides_compose_with_the_fragment(poetry: Poetry) -> None:
    got = compose(poetry, poetry.with_wheels)
    torch, cudnn, numba = got["torch"], got["nvidia-cudnn-cu12"], got["numba"]
    # poetry2nix says true for torch (and old.src.isWheel for numba): it stays true, no list error
    assert torch["autoPatchelfIgnoreMissingDeps"] is True
    assert numba["autoPatchelfIgnoreMissingDeps"] is True
    # the CUDA libraries come from the nvidia-* wheels of the set, not from cudaPackages
    assert "python3.11-nvidia-cublas-cu12-1.0" in torch["buildInputs"]
    assert "python3.11-nvidia-cuda-runtime-cu12-1.0" in torch["buildInputs"]
    assert not any("unfree" in n for n in torch["buildInputs"] + cudnn["buildInputs"])
    assert "addAutoPatchelfSearchPath /nix/store/" in torch["preFixup"]
    assert "config.allowUnfree" not in poetry.with_wheels.read_text()
    # nvidia-cudnn needs cublas: the wheel, and its directories on autoPatchelf's search path
    assert "python3.11-nvidia-cublas-cu12-1.0" in cudnn["buildInputs"]
    assert "-python3.11-nvidia-cublas-cu12-1.0\n" in cudnn["preFixup"]
    # poetry2nix's own additions are still there
    assert "python3.11-numpy-1.0" in torch["propagatedBuildInputs"]
    assert "auto-add-driver-runpath-hook" in torch["nativeBuildInputs"]
    assert got["wheelfix-example"]["buildInputs"][-1] == "zlib-stub"
    assert got["purepkg"]["autoPatchelfIgnoreMissingDeps"] is None
    for package in got.values():
        assert package["drvPath"].endswith(".drv")

    # the nvidia-* wheels not given to `wheelfix nix`: cudaPackages (unfree, said in the header; poetry2nix
    # defines every nvidia-* attribute, so the set cannot tell); numba from an sdist: a list
    assert "config.allowUnfree = true" in poetry.without.read_text()
    got = compose(poetry, poetry.without, numbaIsWheel=False)
    assert "cuda-libcublas-unfree-stub" in got["torch"]["buildInputs"]
    assert got["torch"]["autoPatchelfIgnoreMissingDeps"] is True
    assert got["numba"]["autoPatchelfIgnoreMissingDeps"] == ["libcuda.so.1"]


def test_the_old_list_merge_fails_on_poetry2nix_defaults(poetry: Poetry) -> None:
    """The defect the Boolean-safe merge fixes: `(old.X or [ ]) ++ [ ... ]` over torch's `true`."""
    old_style = poetry.compose.with_name("old-style.nix")
    old_style.write_text(
        "{ pkgs, ... }: final: prev: { torch = prev.torch.overridePythonAttrs (old: {\n"
        "  autoPatchelfIgnoreMissingDeps =\n"
        '    (old.autoPatchelfIgnoreMissingDeps or [ ]) ++ [ "libcuda.so.1" ];\n'
        "}); }\n"
    )
    args = ["--read-write-mode", "--eval", "--strict", "--json", poetry.compose, "--arg", "fragmentFile"]
    proc = realnix.run(["nix-instantiate", *args, old_style])
    assert proc.returncode != 0
    assert "value is a Boolean while a list was expected" in proc.stderr
