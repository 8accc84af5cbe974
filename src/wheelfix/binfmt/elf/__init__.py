"""ELF: the reader (what dynamic linking needs), the editor (RUNPATH/RPATH and PT_INTERP patches), and the
constants and struct layouts they share (consts)."""
