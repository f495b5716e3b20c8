package writer

import (
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ringcap/ringcap/capture/packet"
)

// BenchmarkLiveCompress measures what compressing the file being written
// would cost the capture: a Writer encoding frames of snap length 256 (a
// fixed header of 66 bytes, then random bytes, as a TCP transfer's
// encrypted payload) into a file through the page cache, as written and
// through each kind's encoder on the Writer's own goroutine, where the
// capture's reader runs. Besides ns/op it reports the process's CPU time
// per frame (cpu-ns/op); the difference with "none" is what each frame
// would cost the reader more.
//
//	go test -run XXX -bench LiveCompress -benchtime 2000000x ./writer
func BenchmarkLiveCompress(b *testing.B) {
	// 64 MiB of frames, more than any kind's window: no frame is
	// found again in the ones before it, as no encrypted payload is.
	frames := make([][]byte, 1<<18)
	rnd := rand.New(rand.NewPCG(1, 2))
	header := make([]byte, 66)
	for i := range header {
		header[i] = byte(rnd.Uint32())
	}
	for i := range frames {
		frames[i] = make([]byte, 256)
		copy(frames[i], header)
		for j := len(header); j < 256; j++ {
			frames[i][j] = byte(rnd.Uint32())
		}
	}
	for _, kind := range []Compression{NoCompression, Gzip, LZ4, Zstd} {
		b.Run(kind.String(), func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "live.pcapng"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			var out io.WriteCloser = f
			if kind != NoCompression {
				if out, err = kind.newEncoder(f); err != nil {
					b.Fatal(err)
				}
			}
			w, err := newWriter(newCachedSink(out, 0, nil, nil), Options{Interfaces: testInterfaces[:1]})
			if err != nil {
				b.Fatal(err)
			}
			ts := time.Now()
			b.SetBytes(256)
			cpu0, _ := cpuTimes(b)
			b.ResetTimer()
			for i := range b.N {
				if err := w.WritePacket(packet.Packet{Time: ts, Length: 1514, Data: frames[i%len(frames)]}); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.finish(); err != nil {
				b.Fatal(err)
			}
			if err := out.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			cpu1, _ := cpuTimes(b)
			b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
