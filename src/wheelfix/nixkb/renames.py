"""nixpkgs attributes that were renamed, so that a fragment can name a package on both the current stable
channel and unstable: ``(pkgs.libx11 or pkgs.xorg.libX11)``.

The soname table comes from nixpkgs 26.05 (nix-index), which has the new names. The renames here are the
move of the X.org libraries out of the ``xorg`` set into top-level by-name packages, taken from the alias
list nixpkgs generates for the old names (pkgs/servers/x11/xorg/default.nix after the move: ``libX11 =
libx11;``, ``xcbutil = libxcb-util;``, ``inherit libxcb ...``): there, ``xorg.<old>`` is the old name of
top-level ``<new>``. Only libraries are listed (what a wheel can need); programs and fonts are left out.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["OLD_NAMES", "old_name"]

# new top-level attribute -> its attribute path before the move
OLD_NAMES = MappingProxyType(
    {
        "libapplewm": "xorg.libAppleWM",
        "libdmx": "xorg.libdmx",
        "libfontenc": "xorg.libfontenc",
        "libfs": "xorg.libFS",
        "libice": "xorg.libICE",
        "libpciaccess": "xorg.libpciaccess",
        "libpthread-stubs": "xorg.libpthreadstubs",
        "libsm": "xorg.libSM",
        "libwindowswm": "xorg.libWindowsWM",
        "libx11": "xorg.libX11",
        "libxau": "xorg.libXau",
        "libxaw": "xorg.libXaw",
        "libxcb": "xorg.libxcb",
        "libxcb-cursor": "xorg.xcbutilcursor",
        "libxcb-errors": "xorg.xcbutilerrors",
        "libxcb-image": "xorg.xcbutilimage",
        "libxcb-keysyms": "xorg.xcbutilkeysyms",
        "libxcb-render-util": "xorg.xcbutilrenderutil",
        "libxcb-util": "xorg.xcbutil",
        "libxcb-wm": "xorg.xcbutilwm",
        "libxcomposite": "xorg.libXcomposite",
        "libxcursor": "xorg.libXcursor",
        "libxcvt": "xorg.libxcvt",
        "libxdamage": "xorg.libXdamage",
        "libxdmcp": "xorg.libXdmcp",
        "libxext": "xorg.libXext",
        "libxfixes": "xorg.libXfixes",
        "libxfont_1": "xorg.libXfont",
        "libxfont_2": "xorg.libXfont2",
        "libxft": "xorg.libXft",
        "libxi": "xorg.libXi",
        "libxinerama": "xorg.libXinerama",
        "libxkbfile": "xorg.libxkbfile",
        "libxmu": "xorg.libXmu",
        "libxp": "xorg.libXp",
        "libxpm": "xorg.libXpm",
        "libxpresent": "xorg.libXpresent",
        "libxrandr": "xorg.libXrandr",
        "libxrender": "xorg.libXrender",
        "libxres": "xorg.libXres",
        "libxscrnsaver": "xorg.libXScrnSaver",
        "libxshmfence": "xorg.libxshmfence",
        "libxt": "xorg.libXt",
        "libxtst": "xorg.libXtst",
        "libxv": "xorg.libXv",
        "libxvmc": "xorg.libXvMC",
        "libxxf86dga": "xorg.libXxf86dga",
        "libxxf86misc": "xorg.libXxf86misc",
        "libxxf86vm": "xorg.libXxf86vm",
        "pixman": "xorg.pixman",
    }
)


def old_name(attr: str) -> str | None:
    """The attribute path ``attr`` had before its rename, or None."""
    return OLD_NAMES.get(attr)
