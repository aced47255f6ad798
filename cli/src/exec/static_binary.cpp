// static_binary.cpp: ELF program-header scan for PT_DYNAMIC (static_binary.hpp).
#include "exec/static_binary.hpp"

#include <elf.h>

#include <cstring>
#include <fstream>
#include <vector>

namespace mirrord::cli::exec {

namespace {

template <typename Ehdr, typename Phdr>
bool static_elf(std::ifstream& in) {
    Ehdr eh{};
    in.seekg(0);
    if (!in.read(reinterpret_cast<char*>(&eh), sizeof eh) || eh.e_phentsize != sizeof(Phdr) || eh.e_phnum == 0) {
        return false;
    }
    in.seekg(static_cast<std::streamoff>(eh.e_phoff));
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
        Phdr ph{};
        if (!in.read(reinterpret_cast<char*>(&ph), sizeof ph)) {
            return false;
        }
        if (ph.p_type == PT_DYNAMIC) {
            return false;
        }
    }
    return true;
}

}  // namespace

bool is_binary_static(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    unsigned char ident[EI_NIDENT] = {};
    if (!in || !in.read(reinterpret_cast<char*>(ident), sizeof ident) || std::memcmp(ident, ELFMAG, SELFMAG) != 0 ||
        ident[EI_DATA] != ELFDATA2LSB) {
        return false;
    }
    if (ident[EI_CLASS] == ELFCLASS64) {
        return static_elf<Elf64_Ehdr, Elf64_Phdr>(in);
    }
    if (ident[EI_CLASS] == ELFCLASS32) {
        return static_elf<Elf32_Ehdr, Elf32_Phdr>(in);
    }
    return false;
}

}  // namespace mirrord::cli::exec
