package steer

// wireguard_bpfel.go and .o are generated from wireguard.c by bpf2go (as
// dataplane/prefilter's are; make test regenerates and compares them).
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -I../bpf" -target bpfel -no-global-types wireguard wireguard.c
