# shellcheck shell=bash
# wheelfixHook: repair prebuilt binary wheels with `wheelfix repair` before they are installed, so that
# their ELF binaries find the derivation's native libraries in /nix/store.
#
# Put it in nativeBuildInputs of a wheel-based Python derivation (nixpkgs buildPythonPackage with
# format = "wheel", pyproject.nix / uv2nix wheel builds, poetry2nix binary packages) and the libraries
# the wheel needs in buildInputs. The phase `wheelfixPhase` runs right before installPhase and replaces
# every dist/*.whl with its repaired copy: each binary's RUNPATH gets the store lib directories of what
# it needs (its own $ORIGIN entries kept, DT_RPATH kept as DT_RPATH), executables get the Nix loader.
# On darwin the same phase repairs macOS wheels: unresolved install names (@rpath/libomp.dylib, leaked
# /opt/homebrew/... paths) become absolute store paths (or LC_RPATHs when the header has no room for
# them), and edited slices are re-signed ad hoc.
# A need that no input provides fails the build with the list of missing sonames.
#
# Why before installing and not on the installed tree: wheelfix repairs wheels. The repaired wheel's
# RECORD carries the new hashes of the patched members, the installer copies the bytes as they are,
# and the same code path serves lib.patchWheel (repair once, install anywhere).
#
# Variables (all optional; lists are Nix lists, or space-separated strings):
#   wheelfixIgnoreMissing    sonames (fnmatch globs) to leave unresolved, e.g. [ "libcuda.so.1" ];
#                            each becomes `wheelfix repair --allow GLOB`
#   wheelfixAddDriverRunpath set to true to append the GPU driver directory to the RUNPATH of every
#                            installed ELF file (postFixup), for driver libraries that only exist on
#                            the machine running the program (NixOS: /run/opengl-driver/lib)
#   wheelfixDriverLibDir     that directory [default: /run/opengl-driver/lib]
#   wheelfixLibPath          extra directories to search, flat (like `--lib-path`)
#   wheelfixInterpreter      PT_INTERP for executables [default: $NIX_BINTOOLS/nix-support/dynamic-linker,
#                            else $NIX_CC's, else the loader found in the library directories]
#   wheelfixRpathKind        keep | runpath | rpath [default: keep]
#   wheelfixFlags            extra arguments for `wheelfix repair`
#   wheelfixDist             where the wheels are [default: dist]
#   dontWheelfix             skip wheelfixPhase
#   dontWheelfixSitePackages do not search the site-packages of Python dependencies for libraries
#
# Functions:
#   addWheelfixSearchPath DIR...   search every directory under DIR that holds a *.so, *.so.* or *.dylib file
#   wheelfixRepairWheels OUTDIR WHEEL...   the repair itself, used by wheelfixPhase and lib.patchWheel
#
# Where the libraries come from: an env hook sees every host dependency of the derivation as stdenv
# computes them (buildInputs, depsHostHost and everything they propagate, with or without
# __structuredAttrs) and contributes <dep>/lib, <dep>/lib64 and, for Python dependencies, the
# directories with shared libraries inside <dep>/lib/python*/site-packages (where a wheel such as
# nvidia-cublas-cu12 or a sibling wheel keeps the libraries another wheel's $ORIGIN RUNPATH points at).
# The hook passes them as --lib-path rather than using `wheelfix repair --from-env`, which reads only the
# exported $buildInputs/$propagatedBuildInputs strings: no depsHostHost, nothing under __structuredAttrs
# (the lists are not exported there), no site-packages.

# Sourced once per build, even when the hook reaches the build twice (listed and propagated).
if [[ -n "${_wheelfixHookSourced-}" ]]; then
    return 0
fi
_wheelfixHookSourced=1

# Library directories in search order, each once.
wheelfixLibDirs=()
declare -gA _wheelfixSeenDirs=()

_wheelfixAddDir() {
    local dir
    for dir in "$@"; do
        [[ -d "$dir" ]] || continue
        [[ -z "${_wheelfixSeenDirs[$dir]-}" ]] || continue
        _wheelfixSeenDirs[$dir]=1
        wheelfixLibDirs+=("$dir")
    done
}

# The elements of a list variable: a bash array under __structuredAttrs, else a space-separated string.
# Words are not glob-expanded (ignore patterns such as libcuda* stay as they are).
_wheelfixGetList() {
    local -n _wheelfixResult="$1"
    local name="$2"
    _wheelfixResult=()
    if [[ "$(declare -p "$name" 2>/dev/null)" =~ ^declare\ -[A-Za-z]*a ]]; then
        local -n _wheelfixArray="$name"
        _wheelfixResult=("${_wheelfixArray[@]}")
    elif [[ -n "${!name-}" ]]; then
        local -
        set -f
        # shellcheck disable=SC2206
        _wheelfixResult=(${!name})
    fi
}

addWheelfixSearchPath() {
    local dir file
    for dir in "$@"; do
        [[ -d "$dir" ]] || continue
        while IFS= read -r -d '' file; do
            _wheelfixAddDir "${file%/*}"
        done < <(find -L "$dir" \! -type d \( -name '*.so' -o -name '*.so.*' -o -name '*.dylib' \) -print0 | sort -z)
    done
}

wheelfixGatherLibs() {
    local dep="$1" sitePackages
    _wheelfixAddDir "$dep/lib" "$dep/lib64"
    if [[ -z "${dontWheelfixSitePackages-}" ]]; then
        for sitePackages in "$dep"/lib/python*/site-packages; do
            addWheelfixSearchPath "$sitePackages"
        done
    fi
}

# The hook sits in nativeBuildInputs, so $targetOffset is the host offset: the env hook is called for
# every dependency whose code runs where the built package runs.
# shellcheck disable=SC2154 # set by stdenv while it sources the hook
addEnvHooks "$targetOffset" wheelfixGatherLibs

# The arguments of `wheelfix repair` that come from the derivation, into the array named $1.
_wheelfixRepairArgs() {
    local -n _wheelfixArgs="$1"
    local -a items
    local item
    _wheelfixArgs=()
    _wheelfixGetList items wheelfixLibPath
    _wheelfixAddDir "${items[@]}"
    for item in "${wheelfixLibDirs[@]}"; do
        _wheelfixArgs+=(--lib-path "$item")
    done
    _wheelfixGetList items wheelfixIgnoreMissing
    for item in "${items[@]}"; do
        _wheelfixArgs+=(--allow "$item")
    done
    # the loader stdenv links with; without one (stdenvNoCC) wheelfix looks for it in the lib directories
    local interpreter="${wheelfixInterpreter-}" wrapper
    for wrapper in "${NIX_BINTOOLS-}" "${NIX_CC-}"; do
        if [[ -z "$interpreter" && -n "$wrapper" && -f "$wrapper/nix-support/dynamic-linker" ]]; then
            interpreter="$(< "$wrapper/nix-support/dynamic-linker")"
        fi
    done
    if [[ -n "$interpreter" ]]; then
        _wheelfixArgs+=(--interpreter "$interpreter")
    fi
    if [[ -n "${wheelfixRpathKind-}" ]]; then
        _wheelfixArgs+=(--rpath-kind "$wheelfixRpathKind")
    fi
    _wheelfixGetList items wheelfixFlags
    _wheelfixArgs+=("${items[@]}")
}

# Repair WHEEL... into OUTDIR (same file names). On unresolved needs, print what is missing (and, when
# this wheelfix has `lookup`, the nixpkgs attributes that provide it) and return 1.
wheelfixRepairWheels() {
    local outdir="$1"
    shift
    local -a args
    _wheelfixRepairArgs args
    local log status=0
    log="$(mktemp "${TMPDIR:-/tmp}/wheelfix-log.XXXXXX")"
    echo "wheelfix: repairing ${*##*/} against ${#wheelfixLibDirs[@]} library directories"
    "@wheelfix@" repair "$@" -o "$outdir" "${args[@]}" 2>"$log" || status=$?
    cat "$log" >&2
    if ((status == 1)); then
        local -a missing
        mapfile -t missing < <(sed -n 's/^missing: \([^ ]*\) needed by .*/\1/p' "$log" | sort -u)
        {
            echo
            echo "wheelfix: no build input provides these libraries the wheel needs:"
            printf '  %s\n' "${missing[@]}"
            if ((${#missing[@]})) && "@wheelfix@" lookup --help >/dev/null 2>&1; then
                echo "wheelfix: nixpkgs packages that provide them (wheelfix lookup):"
                "@wheelfix@" lookup "${missing[@]}" || true
            fi
            echo "wheelfix: add the packages that provide them to buildInputs; for libraries that come"
            echo "  with the machine (GPU drivers: libcuda.so.1, ...) set wheelfixIgnoreMissing = [ \"SONAME\" ];"
            echo "  and, to find them at run time, wheelfixAddDriverRunpath = true;"
        } >&2
    fi
    rm -f "$log"
    return "$status"
}

wheelfixPhase() {
    runHook preWheelfix
    if [[ -n "${dontWheelfix-}" ]]; then
        echo "wheelfixPhase: dontWheelfix is set, skipping"
        runHook postWheelfix
        return 0
    fi
    local dist="${wheelfixDist:-dist}"
    local -a wheels=()
    local wheel
    for wheel in "$dist"/*.whl; do
        if [[ -e "$wheel" ]]; then
            wheels+=("$wheel")
        fi
    done
    if ((${#wheels[@]} == 0)); then
        echo "wheelfixPhase: no wheels in $dist/, nothing to repair"
        runHook postWheelfix
        return 0
    fi
    local outdir status=0
    outdir="$(mktemp -d "${TMPDIR:-/tmp}/wheelfix-out.XXXXXX")"
    wheelfixRepairWheels "$outdir" "${wheels[@]}" || status=$?
    if ((status != 0)); then
        rm -rf "$outdir"
        return "$status"
    fi
    # pyproject.nix links a directory src as dist itself: make dist a real directory first
    if [[ -L "$dist" ]]; then
        local target entry
        target="$(readlink -f "$dist")"
        rm "$dist"
        mkdir "$dist"
        for entry in "$target"/*; do
            ln -s "$entry" "$dist/"
        done
    fi
    for wheel in "${wheels[@]}"; do
        mv -f "$outdir/${wheel##*/}" "$dist/${wheel##*/}"
    done
    rmdir "$outdir"
    runHook postWheelfix
}

_wheelfixDriverRunpath() {
    [[ -n "${wheelfixAddDriverRunpath-}" ]] || return 0
    local dir="${wheelfixDriverLibDir:-/run/opengl-driver/lib}"
    local readelf="${READELF:-readelf}"
    local -a outputNames
    if declare -F getAllOutputNames >/dev/null; then
        mapfile -t outputNames < <(getAllOutputNames | tr ' ' '\n')
    else
        _wheelfixGetList outputNames outputs
        ((${#outputNames[@]})) || outputNames=(out)
    fi
    local name file old magic dynamic count=0
    local -a force
    for name in "${outputNames[@]}"; do
        [[ -n "$name" && -e "${!name-}" ]] || continue
        while IFS= read -r -d '' file; do
            magic="$(head -c 4 "$file" | od -An -c | tr -d ' ')"
            [[ "$magic" == '177ELF' ]] || continue
            old="$("@patchelf@" --print-rpath "$file" 2>/dev/null)" || continue # no .dynamic: static
            if [[ ":$old:" == *":$dir:"* ]]; then
                continue
            fi
            force=()
            # keep DT_RPATH a DT_RPATH: patchelf would turn it into DT_RUNPATH
            if command -v "$readelf" >/dev/null; then
                dynamic="$("$readelf" -dW "$file" 2>/dev/null)" || dynamic=
                if [[ "$dynamic" == *"(RPATH)"* ]]; then
                    force=(--force-rpath)
                fi
            else
                echo "wheelfix: no readelf: a DT_RPATH in $file may become DT_RUNPATH" >&2
            fi
            "@patchelf@" "${force[@]}" --add-rpath "$dir" "$file"
            count=$((count + 1))
        done < <(find "${!name}" -type f \( -name '*.so' -o -name '*.so.*' -o -perm -u+x \) -print0 | sort -z)
    done
    echo "wheelfix: added $dir to the runpath of $count ELF files"
}

if declare -F appendToVar >/dev/null; then
    appendToVar preInstallPhases wheelfixPhase
else
    preInstallPhases+=" wheelfixPhase"
fi
postFixupHooks+=(_wheelfixDriverRunpath)
