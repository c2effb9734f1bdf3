package prefilter

// bpf_bpfel.go and bpf_bpfel.o are generated from prefilter.c by bpf2go
// with Debian's clang-19 (make deps installs it; make test regenerates
// them and fails if they differ from what is committed). The kernel's UAPI
// headers come from Debian's linux-libc-dev, whose asm/ headers sit in
// the multiarch directory.
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -I../bpf" -target bpfel -no-global-types bpf prefilter.c
