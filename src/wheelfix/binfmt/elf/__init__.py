"""ELF: the reader (what dynamic linking needs) and the editor (RUNPATH/RPATH and PT_INTERP patches)."""
