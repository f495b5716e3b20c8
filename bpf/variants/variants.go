// Package variants is ringcap's XDP program with the benchmark variants of
// variants.c beside it: the same program with one design choice undone, so
// that the benchmarks in package bpf measure what each choice is worth.
// ringcap itself never loads it.
package variants

import "github.com/cilium/ebpf"

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mllvm -simplifycfg-sink-common=false -I/usr/include/x86_64-linux-gnu " -target bpfel variants variants.c

// Program names in Spec.
const (
	// Ringcap is ringcap's own multi-buffer program.
	Ringcap = variantsProgRingcapXdp
	// RingcapLinear is ringcap's own single-buffer program.
	RingcapLinear = variantsProgRingcapLinear
	// RingcapTC is ringcap's own tc program.
	RingcapTC = variantsProgRingcapTc
	// ReserveFirst reserves ring space before the length test and
	// discards it for unwanted frames.
	ReserveFirst = variantsProgReserveFirst
	// NoRoomCheck reserves without testing the ring's free space first.
	NoRoomCheck = variantsProgNoRoomCheck
	// SlotHash finds every frame's slot in a hash by interface index,
	// where ringcap uses an array for all but the largest indexes.
	SlotHash = variantsProgSlotHash
	// The ways to size a ring record: a whole snap length, the smallest
	// power of two that holds the frame, exactly the frame (dynptr), and
	// exactly the frame copied through a per-CPU buffer, whatever its
	// length (ringcap reserves a frame that fills the snap length).
	RecordSnaplen = variantsProgRecordSnaplen
	RecordClasses = variantsProgRecordClasses
	RecordDynptr  = variantsProgRecordDynptr
	RecordOutput  = variantsProgRecordOutput
	// SharedRing is ringcap's multi-buffer program as it was before its
	// rings were sharded: every CPU writes into one ring, the map
	// SharedRingMap, referenced directly.
	SharedRing = variantsProgSharedRing
)

// SharedRingMap is the name of SharedRing's ring in Spec. It is none of
// the maps package bpf creates: each program loaded from Spec gets one
// of its own.
const SharedRingMap = variantsMapEvents

// Spec returns the object holding all the programs.
func Spec() (*ebpf.CollectionSpec, error) { return loadVariants() }
