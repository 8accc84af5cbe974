"""ELF constants and struct layouts shared by the reader and the editor (values from the gABI and glibc's
``elf.h``). The struct formats carry no byte-order prefix: each user adds ``<`` or ``>`` for the file."""

from __future__ import annotations

# e_ident
ELF_MAGIC = b"\x7fELF"
EI_NIDENT = 16  # the ELF header's fields start after it
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2
# e_type
ET_EXEC, ET_DYN = 2, 3

# p_type, p_flags
PT_NULL, PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE, PT_PHDR = 0, 1, 2, 3, 4, 6
PT_GNU_PROPERTY = 0x6474E553
PF_W, PF_R = 0x2, 0x4

# sh_type, sh_flags
SHT_PROGBITS, SHT_STRTAB, SHT_DYNAMIC, SHT_NOTE, SHT_NOBITS, SHT_DYNSYM = 1, 3, 6, 7, 8, 11
SHF_ALLOC, SHF_EXECINSTR = 0x2, 0x4

# d_tag
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 5, 10, 14, 15, 29
DT_VERDEF, DT_VERNEED, DT_VERNEEDNUM = 0x6FFFFFFC, 0x6FFFFFFE, 0x6FFFFFFF
DT_AUXILIARY, DT_FILTER = 0x7FFFFFFD, 0x7FFFFFFF

# n_type of an FDO .note.dlopen entry (https://systemd.io/ELF_DLOPEN_METADATA/)
NT_FDO_DLOPEN_METADATA = 0x407C0C0A

# Struct formats, 64-bit and 32-bit. Elf_Ehdr is read from offset EI_NIDENT; p_flags is the second field
# of Elf64_Phdr but the seventh of Elf32_Phdr.
EHDR64, EHDR32 = "HHIQQQIHHHHHH", "HHIIIIIHHHHHH"
PHDR64, PHDR32 = "IIQQQQQQ", "IIIIIIII"
SHDR64, SHDR32 = "IIQQQQIIQQ", "IIIIIIIIII"
DYN64, DYN32 = "qQ", "iI"  # d_tag, d_val
SYM64_SIZE, SYM32_SIZE = 24, 16  # bytes of an Elf_Sym; st_name is its first field in both classes
# version chains: the same layout in both classes
VERNEED, VERNAUX = "HHIII", "IHHII"  # Elf_Verneed, Elf_Vernaux
VERDEF, VERDAUX = "HHHHIII", "II"  # Elf_Verdef, Elf_Verdaux
