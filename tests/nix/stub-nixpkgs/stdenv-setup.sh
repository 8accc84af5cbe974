# shellcheck shell=bash
# shellcheck disable=SC2154 # the derivation's attributes ($out, $src, $stubHostPath, ...) are its environment
# shellcheck disable=SC2034 # hostOffset/targetOffset are read by the setup hooks sourced below
# The stub's stdenv: enough of nixpkgs' generic builder for setup hooks to run as they do there.
#
# - nativeBuildInputs (and what they propagate): bin/ on PATH, nix-support/setup-hook sourced with
#   hostOffset=-1 targetOffset=0;
# - buildInputs and propagatedBuildInputs (and what they propagate): setup hooks sourced with
#   hostOffset=0 targetOffset=1, then every env hook registered for offset 0 called once per dependency;
# - buildCommand, or the phases with their pre/post hooks and the pre*Phases lists;
# - propagatedBuildInputs written to $out/nix-support/propagated-build-inputs.
# Host offsets other than 0 and cross compilation do not exist here.
set -eu -o pipefail
shopt -s inherit_errexit

export PATH="$stubHostPath"
cd "$NIX_BUILD_TOP"

declare -a envHostHooks=()
addEnvHooks() {
    local offset="$1"
    shift
    if [[ "$offset" == 0 ]]; then
        envHostHooks+=("$@")
    fi
}

runHook() {
    local hookName="$1" hook
    shift
    if declare -F "$hookName" >/dev/null; then
        "$hookName" "$@"
    elif [[ -n "${!hookName-}" ]]; then
        eval "${!hookName}"
    fi
    local hooks="${hookName}Hooks[@]"
    for hook in ${!hooks+"${!hooks}"}; do
        if declare -F "$hook" >/dev/null; then
            "$hook" "$@"
        else
            eval "$hook"
        fi
    done
}

stripHash() {
    local name
    name="$(basename "$1")"
    if [[ "$name" =~ ^[0-9a-z]{32}- ]]; then
        echo "${name:33}"
    else
        echo "$name"
    fi
}

# Append DEP... and everything they propagate to the array named $1, each once (depth first).
declare -A _stubSeen=()
_stubCollect() {
    local -n _list="$1"
    shift
    local dep
    for dep in "$@"; do
        [[ -z "${_stubSeen[$dep]-}" ]] || continue
        _stubSeen[$dep]=1
        _list+=("$dep")
        if [[ -f "$dep/nix-support/propagated-build-inputs" ]]; then
            # shellcheck disable=SC2046
            _stubCollect "${!_list}" $(< "$dep/nix-support/propagated-build-inputs")
        fi
    done
}

declare -a nativeDeps=() hostDeps=()
# shellcheck disable=SC2086
_stubCollect nativeDeps ${nativeBuildInputs-}
_stubSeen=()
# shellcheck disable=SC2086
_stubCollect hostDeps ${buildInputs-} ${propagatedBuildInputs-}

for dep in "${nativeDeps[@]}"; do
    [[ -d "$dep/bin" ]] && PATH="$dep/bin:$PATH"
    if [[ -f "$dep/nix-support/setup-hook" ]]; then
        hostOffset=-1 targetOffset=0
        # shellcheck disable=SC1091
        source "$dep/nix-support/setup-hook"
    fi
done
for dep in "${hostDeps[@]}"; do
    if [[ -f "$dep/nix-support/setup-hook" ]]; then
        hostOffset=0 targetOffset=1
        # shellcheck disable=SC1091
        source "$dep/nix-support/setup-hook"
    fi
done
unset hostOffset targetOffset
for dep in "${hostDeps[@]}"; do
    for hook in "${envHostHooks[@]}"; do
        "$hook" "$dep"
    done
done

unpackPhase() {
    runHook preUnpack
    if [[ -z "${dontUnpack-}" ]]; then
        cp -r --no-preserve=mode "$src"/. .
    fi
    runHook postUnpack
}
buildPhase() {
    runHook preBuild
    runHook postBuild
}
installPhase() {
    runHook preInstall
    mkdir -p "$out"
    runHook postInstall
}
fixupPhase() {
    runHook preFixup
    runHook postFixup
}
for phase in patchPhase configurePhase checkPhase installCheckPhase distPhase; do
    eval "$phase() { runHook pre${phase%Phase}; runHook post${phase%Phase}; }"
done

if [[ -n "${buildCommand-}" ]]; then
    eval "$buildCommand"
else
    phases="${prePhases-} unpackPhase patchPhase ${preConfigurePhases-} configurePhase \
        ${preBuildPhases-} buildPhase checkPhase ${preInstallPhases-} installPhase \
        ${preFixupPhases-} fixupPhase installCheckPhase ${preDistPhases-} distPhase ${postPhases-}"
    for phase in $phases; do
        echo "stub stdenv: running $phase"
        if [[ -n "${!phase-}" ]]; then
            eval "${!phase}"
        else
            "$phase"
        fi
    done
fi

if [[ -n "${propagatedBuildInputs-}" ]]; then
    mkdir -p "$out/nix-support"
    echo "$propagatedBuildInputs" > "$out/nix-support/propagated-build-inputs"
fi
