package writer

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ringcap/ringcap/capture/cpustat"
	"github.com/ringcap/ringcap/capture/packet"
)

// BenchmarkWriteFile measures writing 256-byte packets into files of
// 256 MiB, write-back at close included, directly (O_DIRECT, ringcap's default) and
// through the page cache by the size of the Writer's buffer. Besides
// ns/op it reports CPU time per packet: the process's (cpu-ns/op) and the
// whole machine's (machine-cpu-ns/op), which also counts the kernel's
// writeback of the page cache. The temporary directory must take O_DIRECT
// (ext4 on the CI machines) for the direct case to run.
//
//	go test -run XXX -bench WriteFile ./writer
func BenchmarkWriteFile(b *testing.B) {
	cases := []struct {
		name     string
		buffered bool
		size     int
	}{{"direct", false, 0}}
	for _, size := range []int{64 << 10, 1 << 20, 4 << 20} {
		cases = append(cases, struct {
			name     string
			buffered bool
			size     int
		}{fmt.Sprintf("buffered/buffer=%dKiB", size>>10), true, size})
	}
	data := make([]byte, 256)
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			files, err := Create(Config{
				Path:     filepath.Join(b.TempDir(), "bench.pcapng"),
				Options:  Options{Interfaces: []Interface{{Name: "eth0", SnapLen: 256, Queues: true}}, BufferSize: c.size},
				Policy:   Policy{Size: 256 << 20},
				MaxFiles: 2,
				Buffered: c.buffered,
			})
			if err != nil {
				b.Fatal(err)
			}
			if !c.buffered && files.IOMode() != "direct I/O" {
				files.Close()
				b.Skipf("the temporary directory is written %s", files.IOMode())
			}
			ts := time.Now()
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			cpu0, machine0 := cpuTimes(b)
			b.ResetTimer()
			for range b.N {
				if err := files.WritePacket(packet.Packet{Time: ts, Length: 2000, Queue: 1, Data: data}); err != nil {
					b.Fatal(err)
				}
			}
			if err := files.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			cpu1, machine1 := cpuTimes(b)
			b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(machine1-machine0)/float64(b.N), "machine-cpu-ns/op")
		})
	}
}

// cpuTimes reads the process's and the machine's CPU time.
func cpuTimes(b *testing.B) (process, machine time.Duration) {
	process, err := cpustat.Process()
	if err == nil {
		machine, err = cpustat.Machine()
	}
	if err != nil {
		b.Fatal(err)
	}
	return process, machine
}
