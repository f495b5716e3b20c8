package bpf

import (
	"fmt"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/bpf/frames"
	"github.com/ringcap/ringcap/bpf/variants"
)

// benchRepeat is how many times one test run repeats the program; the
// kernel reports the mean time of a run.
const benchRepeat = 20000

// noopProgram is the baseline: a program of the build it is compared
// with that passes the frame on: XDP multi-buffer ("xdp.frags") or not,
// returning XDP_PASS, or tc, returning TCX_NEXT.
func noopProgram(b *testing.B, build Build) *ebpf.Program {
	spec := &ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		AttachType:   ebpf.AttachXDP,
		License:      "MIT",
		Instructions: asm.Instructions{asm.LoadImm(asm.R0, xdpPass, asm.DWord), asm.Return()},
	}
	switch build {
	case XDP:
		spec.Flags = unix.BPF_F_XDP_HAS_FRAGS
	case TC:
		spec.Type, spec.AttachType = ebpf.SchedCLS, ebpf.AttachNone
		spec.Instructions = asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()} // TCX_NEXT
	}
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { prog.Close() })
	return prog
}

// loadVariant loads one program of the variants object as build.
func loadVariant(b *testing.B, spec *ebpf.CollectionSpec, program string, build Build, cfg Config) (*Objects, *ebpf.Program) {
	cfg.Perfmon = true
	objs, err := loadSpec(spec, cfg)
	if err != nil {
		b.Fatal(err)
	}
	mapLoopback(b, objs)
	// The slot-hash variant finds loopback's inbound slot 0 in the hash.
	if err := objs.LargeIndexSlots.Put(uint32(loopbackIndex<<1), uint32(1)); err != nil {
		objs.Close()
		b.Fatal(err)
	}
	prog, err := objs.program(program, Instance{Build: build})
	if err != nil {
		objs.Close()
		b.Fatal(err)
	}
	return objs, prog
}

// BenchmarkProgram measures the cost of a frame in the program's two
// builds, and in the variants that undo one of its choices, as a ratio to
// the no-op program of the same build measured in the same iterations
// (x-noop). Run it with
//
//	go test -run XXX -bench Program ./bpf
func BenchmarkProgram(b *testing.B) {
	bpftest.RequirePrivileges(b)
	spec, err := variants.Spec()
	if err != nil {
		b.Fatal(err)
	}
	small := frames.Spec{L3Len: 46}.Build() // 60 bytes, never selected
	big := frames.Spec{L3Len: 2000}.Build() // selected
	// For the expression: a frame to another host, one to the host but
	// another port (the expression reads the TCP header, after the IP
	// header's length), and one that matches.
	const expr = "host 198.18.0.9 and tcp port 443"
	toPort := func(host byte, port layers.TCPPort) []byte { return tcpFrame(b, host, port) }
	filter, err := CompileFilter(expr)
	if err != nil {
		b.Fatal(err)
	}
	type selection struct {
		all    bool
		filter *Filter
	}
	withExpr := selection{filter: filter}
	allExpr := selection{all: true, filter: filter}
	tests := []struct {
		name    string
		program string
		build   Build
		frame   []byte
		ring    string // "drained": a reader empties it; "full": nobody does
		sel     selection
	}{
		{"not-selected-expression/ringcap", variants.Ringcap, XDP, small, "drained", withExpr},
		{"not-selected-expression/ringcap-linear", variants.RingcapLinear, XDPLinear, small, "drained", withExpr},
		{"all-expression-other-host/ringcap", variants.Ringcap, XDP, toPort(2, 443), "drained", allExpr},
		{"all-expression-other-host/ringcap-linear", variants.RingcapLinear, XDPLinear, toPort(2, 443), "drained", allExpr},
		{"all-expression-other-port/ringcap", variants.Ringcap, XDP, toPort(9, 80), "drained", allExpr},
		{"all-expression-other-port/ringcap-linear", variants.RingcapLinear, XDPLinear, toPort(9, 80), "drained", allExpr},
		{"all-expression-match/ringcap", variants.Ringcap, XDP, toPort(9, 443), "drained", allExpr},
		{"all-expression-match/ringcap-linear", variants.RingcapLinear, XDPLinear, toPort(9, 443), "drained", allExpr},
		{"not-selected/ringcap", variants.Ringcap, XDP, small, "drained", selection{}},
		{"not-selected/ringcap-linear", variants.RingcapLinear, XDPLinear, small, "drained", selection{}},
		{"not-selected/reserve-first", variants.ReserveFirst, XDP, small, "drained", selection{}},
		{"not-selected/slot-hash", variants.SlotHash, XDP, small, "drained", selection{}},
		{"not-selected/ringcap-tc", variants.RingcapTC, TC, small, "drained", selection{}},
		{"not-selected-expression/ringcap-tc", variants.RingcapTC, TC, small, "drained", withExpr},
		{"selected-drained/ringcap", variants.Ringcap, XDP, big, "drained", selection{}},
		{"selected-drained/ringcap-tc", variants.RingcapTC, TC, big, "drained", selection{}},
		{"selected-drained/ringcap-linear", variants.RingcapLinear, XDPLinear, big, "drained", selection{}},
		{"selected-drained/no-room-check", variants.NoRoomCheck, XDP, big, "drained", selection{}},
		{"selected-drained/record-snaplen", variants.RecordSnaplen, XDP, big, "drained", selection{}},
		{"selected-ring-full/ringcap", variants.Ringcap, XDP, big, "full", selection{}},
		{"selected-ring-full/no-room-check", variants.NoRoomCheck, XDP, big, "full", selection{}},
	}
	noops := map[Build]*ebpf.Program{XDP: noopProgram(b, XDP), XDPLinear: noopProgram(b, XDPLinear), TC: noopProgram(b, TC)}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			cfg := Config{MTU: 1500, SnapLen: 256, RingSize: 1 << 20, Slots: 1, CaptureAll: tt.sel.all, Filter: tt.sel.filter}
			objs, prog := loadVariant(b, spec, tt.program, tt.build, cfg)
			defer objs.Close()
			noop := noops[tt.build]
			if tt.ring == "full" {
				if _, err := prog.Run(&ebpf.RunOptions{Data: tt.frame, Repeat: 1 << 20 / 256}); err != nil {
					b.Fatal(err)
				}
			} else {
				stop := drainInBackground(b, objs.Rings[0])
				defer stop()
			}
			var subject, base time.Duration
			b.ResetTimer()
			for range b.N {
				_, d, err := prog.Benchmark(tt.frame, benchRepeat, nil)
				if err != nil {
					b.Fatal(err)
				}
				subject += d
				_, d, err = noop.Benchmark(tt.frame, benchRepeat, nil)
				if err != nil {
					b.Fatal(err)
				}
				base += d
			}
			b.ReportMetric(float64(subject.Nanoseconds())/float64(b.N), "ns/frame")
			b.ReportMetric(float64(base.Nanoseconds())/float64(b.N), "noop-ns/frame")
			b.ReportMetric(float64(subject)/float64(base), "x-noop")
			c, err := objs.ReadCounters(0)
			if err != nil {
				b.Fatal(err)
			}
			if tt.ring == "full" && c.Written > 1<<20/256 {
				b.Fatalf("the ring was meant to stay full, yet %d records were written", c.Written)
			}
		})
	}
}

// tcpFrame is a TCP SYN from 198.18.0.1 to 198.18.0.host, port port.
func tcpFrame(b *testing.B, host byte, port layers.TCPPort) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: []byte{198, 18, 0, 1}, DstIP: []byte{198, 18, 0, host}}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: port, SYN: true, Window: 65535}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	eth := &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// benchmarkOnCPUs runs prog over frame benchRepeat times on each of CPUs
// 0 to cpus-1 at once, and returns the sum of the runs' durations.
func benchmarkOnCPUs(b *testing.B, prog *ebpf.Program, frame []byte, cpus int) time.Duration {
	return onCPUs(b, cpus, func() (time.Duration, error) {
		_, d, err := prog.Benchmark(frame, benchRepeat, nil)
		return d, err
	})
}

// onCPUs runs f at once on CPUs 0 to cpus-1 (onCPU), and returns the sum
// of the durations they report.
func onCPUs(b *testing.B, cpus int, f func() (time.Duration, error)) time.Duration {
	durations := make([]time.Duration, cpus)
	errs := make(chan error, cpus)
	for cpu := range cpus {
		go func() {
			errs <- onCPU(cpu, func() error {
				var err error
				durations[cpu], err = f()
				return err
			})
		}()
	}
	for range cpus {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	var total time.Duration
	for _, d := range durations {
		total += d
	}
	return total
}

// BenchmarkRecordSize compares the ways to size a ring record for whole
// frames (snap length 65535): the time a frame takes with a reader
// draining the ring, and the ring bytes it takes.
//
//	go test -run XXX -bench RecordSize ./bpf
func BenchmarkRecordSize(b *testing.B) {
	bpftest.RequirePrivileges(b)
	spec, err := variants.Spec()
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{MTU: 1500, CaptureAll: true, SnapLen: MaxSnapLen, RingSize: 64 << 20, Slots: 1}
	for _, size := range []int{60, 1514, 9014} {
		frame := frames.Spec{L3Len: size - 14}.Build()
		for _, program := range []string{variants.RecordSnaplen, variants.RecordClasses, variants.RecordDynptr, variants.RecordOutput} {
			b.Run(fmt.Sprintf("frame=%d/%s", size, program), func(b *testing.B) {
				objs, prog := loadVariant(b, spec, program, XDP, cfg)
				defer objs.Close()
				// Ring bytes a record takes: a few records into the empty
				// ring, nobody reading.
				const probe = 16
				if err := bpftest.RunTimes(prog, frame, probe); err != nil {
					b.Fatal(err)
				}
				rd, err := ringbuf.NewReader(objs.Rings[0])
				if err != nil {
					b.Fatal(err)
				}
				perRecord := float64(rd.AvailableBytes()) / probe
				readNow(b, rd, func([]byte) {})
				rd.Close()

				stop := drainInBackground(b, objs.Rings[0])
				defer stop()
				var total time.Duration
				b.ResetTimer()
				for range b.N {
					_, d, err := prog.Benchmark(frame, benchRepeat/10, nil)
					if err != nil {
						b.Fatal(err)
					}
					total += d
				}
				b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/frame")
				b.ReportMetric(perRecord, "ring-bytes/frame")
				c, err := objs.ReadCounters(0)
				if err != nil {
					b.Fatal(err)
				}
				if c.Written+probe < c.Selected/2 {
					b.Fatalf("%d of %d frames written: the reader did not keep the ring from filling", c.Written, c.Selected)
				}
			})
		}
	}
}
