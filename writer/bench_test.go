package writer

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkWriteFile measures writing 256-byte packets into a file through
// the page cache, by the size of the Writer's buffer: the write system
// calls it saves against the cache it spends.
//
//	go test -run XXX -bench WriteFile ./writer
func BenchmarkWriteFile(b *testing.B) {
	const fileSize = 256 << 20 // a new file from then on, as rotation would
	data := make([]byte, 256)
	for _, size := range []int{16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20} {
		b.Run(fmt.Sprintf("buffer=%dKiB", size>>10), func(b *testing.B) {
			dir := b.TempDir()
			var (
				f     *os.File
				w     *Writer
				files int
			)
			next := func() {
				if f != nil {
					if err := w.Flush(); err != nil {
						b.Fatal(err)
					}
					f.Close()
					os.Remove(f.Name())
				}
				var err error
				files++
				if f, err = os.Create(filepath.Join(dir, fmt.Sprintf("%d.pcapng", files))); err != nil {
					b.Fatal(err)
				}
				if w, err = New(f, Options{Interfaces: []Interface{{Name: "eth0", SnapLen: 256, Queues: true}}, BufferSize: size}); err != nil {
					b.Fatal(err)
				}
			}
			next()
			ts := time.Now()
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := w.WritePacket(Packet{Time: ts, Length: 2000, Queue: 1, Data: data}); err != nil {
					b.Fatal(err)
				}
				if w.Size() >= fileSize {
					// Rotation's own cost is not measured here.
					b.StopTimer()
					next()
					b.StartTimer()
				}
			}
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			f.Close()
		})
	}
}
