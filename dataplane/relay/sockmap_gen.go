package relay

// sockmap_bpfel.go and sockmap_bpfel.o are generated from sockmap.c by
// bpf2go with Debian's clang-19, as the pre-filter's are
// (dataplane/prefilter/gen.go); make check-generated fails if they differ
// from what is committed.
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -no-global-types sockmap sockmap.c
