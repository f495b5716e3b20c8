package capture

import (
	"context"
	"io"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/ringcap/ringcap/bpf/frames"
	"github.com/ringcap/ringcap/writer"
)

// BenchmarkRingToPcapng measures the reader and the writer on one core:
// records already in the ring, turned into pcapng bytes (thrown away).
// The program fills the ring between timed batches. Run it with
//
//	go test -run XXX -bench RingToPcapng -benchmem ./capture
func BenchmarkRingToPcapng(b *testing.B) {
	inNewNetns(b)
	const snaplen, batch = 256, 100000
	c, err := Open(Config{Interfaces: []string{"lo"}, MTU: 1500, SnapLen: snaplen, RingSize: 64 << 20, Mode: ModeGeneric, Directions: In})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	w, err := writer.New(io.Discard, writer.Options{Interfaces: []writer.Interface{{Name: "lo", SnapLen: snaplen}}})
	if err != nil {
		b.Fatal(err)
	}
	frame := frames.Spec{L3Len: 2000}.Build()
	fill := func(n int) {
		if _, err := testProgram(b, c).Run(&ebpf.RunOptions{Data: frame, Repeat: uint32(n)}); err != nil {
			b.Fatal(err)
		}
	}
	// Warm up: buffers reach their steady size.
	fill(1000)
	if err := c.Run(context.Background(), w, 1000); err != nil {
		b.Fatal(err)
	}

	b.SetBytes(snaplen)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		b.StopTimer()
		fill(n)
		b.StartTimer()
		if err := c.Run(context.Background(), w, uint64(n)); err != nil {
			b.Fatal(err)
		}
		done += n
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
