package main

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/cmd/internal/veth"
)

// generator sends frames out of txIf from inside the kernel:
// BPF_PROG_TEST_RUN in live-frames mode runs a program that returns
// XDP_TX, which transmits the frame on the test run's ingress interface.
// veth hands such frames only to a peer running a native XDP program.
type generator struct {
	tx      *ebpf.Program
	ifindex uint32
	threads int   // test runs at once, spread over cpus
	cpus    []int // the CPUs ringbench may run on
}

func xdpProgram(ret uint32) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		AttachType:   ebpf.AttachXDP,
		Flags:        unix.BPF_F_XDP_HAS_FRAGS, // the MTU is 9000
		License:      "MIT",
		Instructions: asm.Instructions{asm.LoadImm(asm.R0, int64(ret), asm.DWord), asm.Return()},
	})
}

const (
	xdpPass = 2
	xdpTX   = 3
)

func newGenerator(p *veth.Network, threads int) (*generator, error) {
	prog, err := xdpProgram(xdpTX)
	if err != nil {
		return nil, fmt.Errorf("load generator: %w", err)
	}
	g := &generator{tx: prog, threads: max(threads, 1)}
	if g.cpus, err = veth.AllowedCPUs(); err != nil {
		prog.Close()
		return nil, err
	}
	err = veth.Do(p.Tx, func() error {
		ifc, err := net.InterfaceByName(txIf)
		if err != nil {
			return err
		}
		g.ifindex = uint32(ifc.Index)
		return nil
	})
	if err != nil {
		prog.Close()
		return nil, err
	}
	return g, nil
}

// xdpMD is struct xdp_md: the test run's context.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// send transmits count copies of frame at about rate frames a second (0:
// as fast as it can), and returns the time it took. The frames are split
// between g.threads threads, pinned to the allowed CPUs in turn; veth receives
// them on the CPU that sent them. Each test run sets up a page pool first,
// which takes milliseconds, so a paced send runs a quarter of a second's
// frames at a time, and an unpaced one all at once.
func (g *generator) send(p *veth.Network, frame []byte, count, rate int) (time.Duration, error) {
	start := time.Now()
	errs := make(chan error, g.threads)
	for i := range g.threads {
		n := count / g.threads
		if i < count%g.threads {
			n++
		}
		perThread := rate / g.threads
		if rate > 0 {
			perThread = max(perThread, 1) // 0 would mean unpaced
		}
		go func() { errs <- g.sendOn(p, g.cpus[i%len(g.cpus)], frame, n, perThread) }()
	}
	var err error
	for range g.threads {
		err = errors.Join(err, <-errs)
	}
	return time.Since(start), err
}

func (g *generator) sendOn(p *veth.Network, cpu int, frame []byte, count, rate int) error {
	chunk := count
	if rate > 0 {
		chunk = max(rate/4, 1)
	}
	return veth.Do(p.Tx, func() error {
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pin generator to CPU %d: %w", cpu, err)
		}
		opts := ebpf.RunOptions{
			Data:      frame,
			Context:   xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: g.ifindex},
			Flags:     unix.BPF_F_TEST_XDP_LIVE_FRAMES,
			BatchSize: 64,
		}
		start := time.Now()
		for sent := 0; sent < count; {
			n := min(chunk, count-sent)
			opts.Repeat = uint32(n)
			if _, err := g.tx.Run(&opts); err != nil {
				return fmt.Errorf("live-frames test run: %w", err)
			}
			sent += n
			if rate > 0 {
				due := start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))
				time.Sleep(time.Until(due))
			}
		}
		return nil
	})
}

// passOnRx attaches a native XDP_PASS program to the receiving end, which
// veth needs to take the generator's frames; ringcap brings its own.
func passOnRx(p *veth.Network) (link.Link, error) {
	prog, err := xdpProgram(xdpPass)
	if err != nil {
		return nil, err
	}
	defer prog.Close()
	var l link.Link
	err = veth.Do(p.Rx, func() error {
		ifc, err := net.InterfaceByName(rxIf)
		if err != nil {
			return err
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: link.XDPDriverMode})
		return err
	})
	return l, err
}
