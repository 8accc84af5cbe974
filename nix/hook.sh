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
#   wheelfixAddDriverRunpath set to true to append the GPU driver directory (libraries that only exist on
#                            the machine running the program; NixOS: /run/opengl-driver/lib) to the
#                            search path of the binaries that need a GPU driver library (libcuda.so.1,
#                            ...; DT_NEEDED, .note.dlopen or a dlopen string), and of no other: written
#                            into the wheel by wheelfix (`repair --driver-runpath`), not by patchelf
#                            (nixpkgs' autoAddDriverRunpath is the alternative: it edits every ELF file)
#   wheelfixDriverLibDir     that directory [default: /run/opengl-driver/lib]
#   wheelfixLibPath          extra directories to search, flat (like `--lib-path`)
#   wheelfixInterpreter      PT_INTERP for executables [default: $NIX_BINTOOLS/nix-support/dynamic-linker,
#                            else $NIX_CC's, else the loader found in the library directories]
#   wheelfixRpathKind        keep | runpath | rpath [default: keep]
#   wheelfixFlags            extra arguments for `wheelfix repair`
#   wheelfixDist             where the wheels are [default: dist]
#   dontWheelfix             skip wheelfixPhase
#   dontWheelfixSitePackages do not search the site-packages of Python dependencies for libraries
#   wheelfixAllowPatchELF    let stdenv's patchELF run in fixupPhase (see below) [default: unset: the hook
#                            sets dontPatchELF]
#   dontWheelfixVerify       skip wheelfixVerifyPhase (see below)
#
# fixupPhase: every Linux stdenv build runs patchelf's setup hook in fixupPhase (`patchELF`: `patchelf
# --shrink-rpath` on every ELF file of every output) unless dontPatchELF is set. It keeps only the
# directories that hold a DT_NEEDED library, so it deletes every directory wheelfix added for a library the
# binary dlopen()s (.note.dlopen, dlopen strings) and the GPU driver directory, and it turns a DT_RPATH it
# shortens into DT_RUNPATH (which no longer applies to the binary's own dependencies). None of
# buildPythonPackage, pyproject.nix, uv2nix or poetry2nix sets dontPatchELF. So this hook sets
# dontPatchELF=1 unless wheelfixAllowPatchELF is set: the binaries of a prebuilt wheel have nothing to
# shrink (wheelfix adds only the directories a need is found in). wheelfixVerifyPhase (a postPhase: after
# fixupPhase and every postFixup hook) then checks that every installed binary wheelfixPhase edited still
# has the store directories and the tag wheelfix wrote, and fails the build naming each one that lost some
# (with wheelfixAllowPatchELF, or an autoPatchelfHook that was not turned off: dontAutoPatchelf = true).
#
# Functions:
#   addWheelfixSearchPath DIR...   search every directory under DIR that holds a *.so, *.so.* or *.dylib file
#   wheelfixRepairWheels OUTDIR WHEEL...   the repair itself, used by wheelfixPhase and lib.patchWheel; each
#                                  search path it writes is recorded in wheelfixEdits (member, tag, value,
#                                  tab-separated) for wheelfixVerifyPhase and lib.patchWheel
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
    if [[ -n "${wheelfixAddDriverRunpath-}" ]]; then
        _wheelfixArgs+=(--driver-runpath "${wheelfixDriverLibDir:-/run/opengl-driver/lib}")
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
    local log plan status=0
    log="$(mktemp "${TMPDIR:-/tmp}/wheelfix-log.XXXXXX")"
    plan="$(mktemp "${TMPDIR:-/tmp}/wheelfix-plan.XXXXXX")"
    echo "wheelfix: repairing ${*##*/} against ${#wheelfixLibDirs[@]} library directories"
    # -v: the whole search path per binary, which _wheelfixRecordEdits reads
    "@wheelfix@" repair -v "$@" -o "$outdir" "${args[@]}" >"$plan" 2>"$log" || status=$?
    cat "$plan"
    cat "$log" >&2
    if ((status == 0)); then
        _wheelfixRecordEdits "$plan"
    fi
    rm -f "$plan"
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

# The search paths `wheelfix repair` wrote, from its report ("  MEMBER: OLD -> KIND VALUE  (for ...)").
declare -ga wheelfixEdits=()
_wheelfixRecordEdits() {
    local line re='^  (.+): (no search path|RPATH .*|RUNPATH .*) -> (RPATH|RUNPATH) ([^ ]*)(  \(for .*\))?$'
    while IFS= read -r line; do
        if [[ "$line" =~ $re ]]; then
            wheelfixEdits+=("${BASH_REMATCH[1]}"$'\t'"${BASH_REMATCH[3]}"$'\t'"${BASH_REMATCH[4]}")
        fi
    done <"$1"
}

# Where an installer puts a wheel member, relative to the prefix or site-packages (empty: not checked).
_wheelfixInstalledPath() {
    local member="$1"
    case "$member" in
    *.data/scripts/*) echo "bin/${member#*.data/scripts/}" ;;
    *.data/purelib/* | *.data/platlib/*)
        member="${member#*.data/}"
        echo "${member#*/}"
        ;;
    *.data/data/*) echo "${member#*.data/data/}" ;;
    *.data/*) ;;
    *) echo "$member" ;;
    esac
}

_wheelfixIsELF() {
    if declare -F isELF >/dev/null; then
        isELF "$1"
    else
        [[ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" == '177ELF' ]]
    fi
}

# After fixupPhase and the postFixup hooks: every installed binary wheelfixPhase edited still has the
# store directories and the tag wheelfix wrote.
wheelfixVerifyPhase() {
    if [[ -n "${dontWheelfixVerify-}" || ${#wheelfixEdits[@]} -eq 0 ]]; then
        return 0
    fi
    local -a outputNames files
    if declare -F getAllOutputNames >/dev/null; then
        read -r -a outputNames <<<"$(getAllOutputNames)"
    else
        _wheelfixGetList outputNames outputs
        ((${#outputNames[@]})) || outputNames=(out)
    fi
    local name file
    declare -A byBase=()
    for name in "${outputNames[@]}"; do
        [[ -n "$name" && -e "${!name-}" ]] || continue
        while IFS= read -r -d '' file; do
            byBase[${file##*/}]+="$file"$'\n'
        done < <(find "${!name}" -type f -print0)
    done
    local readelf="${READELF:-readelf}" record member kind value rel actual entry dynamic tag
    local -a problems=() entries
    local checked=0
    for record in "${wheelfixEdits[@]}"; do
        IFS=$'\t' read -r member kind value <<<"$record"
        rel="$(_wheelfixInstalledPath "$member")"
        [[ -n "$rel" ]] || continue
        while IFS= read -r file; do
            [[ -n "$file" && "$file" == */"$rel" ]] || continue
            _wheelfixIsELF "$file" || continue
            checked=$((checked + 1))
            actual="$("@patchelf@" --print-rpath "$file" 2>/dev/null)" || actual=""
            IFS=: read -r -a entries <<<"$value"
            for entry in "${entries[@]}"; do
                if [[ "$entry" == /* && ":$actual:" != *":$entry:"* ]]; then
                    problems+=("$file: lost $entry (wheelfix wrote $kind $value; now: ${actual:-nothing})")
                fi
            done
            if command -v "$readelf" >/dev/null; then
                dynamic="$("$readelf" -dW "$file" 2>/dev/null)" || dynamic=""
                tag=""
                if [[ "$dynamic" == *"(RUNPATH)"* ]]; then
                    tag=RUNPATH
                elif [[ "$dynamic" == *"(RPATH)"* ]]; then
                    tag=RPATH
                fi
                if [[ -n "$tag" && "$tag" != "$kind" ]]; then
                    problems+=("$file: wheelfix wrote a DT_$kind, it is a DT_$tag now")
                fi
            fi
        done <<<"${byBase[${rel##*/}]-}"
    done
    if ((${#problems[@]})); then
        {
            echo "wheelfix: the search paths wheelfix wrote were changed after the wheel was installed:"
            printf '  %s\n' "${problems[@]}"
            echo "wheelfix: something after installPhase rewrote them: stdenv's patchELF (patchelf --shrink-rpath"
            echo "  keeps only directories of DT_NEEDED libraries and turns a DT_RPATH it shortens into DT_RUNPATH),"
            echo "  which runs when wheelfixAllowPatchELF is set (or dontPatchELF is unset again), or"
            echo "  autoPatchelfHook (set dontAutoPatchelf = true; where wheelfixHook replaces it)."
            echo "  Set dontWheelfixVerify = true; to accept the change."
        } >&2
        return 1
    fi
    echo "wheelfixVerifyPhase: $checked installed binaries keep the search paths wheelfix wrote"
}

# fixupPhase: see the comment at the top. Set here, when the hook is sourced: the derivation's own
# attributes are in the environment by then.
if [[ -z "${wheelfixAllowPatchELF-}" ]]; then
    dontPatchELF=1
fi

if declare -F appendToVar >/dev/null; then
    appendToVar preInstallPhases wheelfixPhase
    appendToVar postPhases wheelfixVerifyPhase
else
    preInstallPhases+=" wheelfixPhase"
    postPhases+=" wheelfixVerifyPhase"
fi
