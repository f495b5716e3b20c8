// Package bpf holds ringcap's XDP and tc programs and loads them with the
// user's selection baked in as constants.
package bpf

// -simplifycfg-sink-common=false keeps clang from merging the tails
// "cnt->a++; return" and "cnt->b++; return" into one increment through
// a pointer offset held in a register: the verifier refuses that pointer
// arithmetic to a process without CAP_PERFMON, and ringcap needs only
// CAP_BPF and CAP_NET_ADMIN.
//
// The include path for <asm/types.h> is Debian's multiarch one; the object
// is committed, so only `go generate ./bpf` needs clang and these headers
// (apt-get install clang llvm libbpf-dev linux-libc-dev).
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mllvm -simplifycfg-sink-common=false -I/usr/include/x86_64-linux-gnu" -target bpfel -type event -type iface_counters -type ring_choice -type xdp_md ringcap ringcap.c
