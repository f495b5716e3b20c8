package main

import (
	byteorder "encoding/binary"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/cmd/internal/veth"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// genPort is the UDP port generator i sends to: a frame's sender shows in
// the file.
func genPort(i int) int { return 9000 + i }

// The offsets in a captured frame sent by a generator: Ethernet (14),
// IPv4 without options (20), UDP (8), then the payload, whose first four
// bytes are the frame's sequence number.
const (
	udpDstOffset = 14 + 20 + 2
	payloadStart = 14 + 20 + 8
)

// ringCPUs picks, for each of rings rings, a CPU this test may use whose
// frames go to that ring (CPU c writes into ring c modulo rings), and
// skips t when there is none.
func ringCPUs(t *testing.T, rings int) []int {
	t.Helper()
	allowed := allowedCPUs(t)
	cpus := make([]int, rings)
	for ring := range cpus {
		i := slices.IndexFunc(allowed, func(cpu int) bool { return cpu%rings == ring })
		if i < 0 {
			t.Skipf("needs a CPU for each of %d rings; this process may use %v", rings, allowed)
		}
		cpus[ring] = allowed[i]
	}
	return cpus
}

// generator sends UDP frames from the sending namespace on a thread
// pinned to one CPU.
type generator struct {
	cpu     int
	port    int // the destination port, which tells its frames apart
	payload int // bytes; the frame is payload + 42
	sent    int // frames sent so far; the next one's sequence number
}

// send sends n frames, each with its sequence number, on a thread pinned
// to g.cpu in namespace ns. veth.Do gives the thread its CPUs back.
func (g *generator) send(ns, addr string, n int) error {
	return veth.Do(ns, func() error {
		var set unix.CPUSet
		set.Set(g.cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pin to CPU %d: %w", g.cpu, err)
		}
		// Unconnected: the receiver's port unreachable replies, if
		// any, do not fail the sends.
		conn, err := net.ListenUDP("udp4", nil)
		if err != nil {
			return err
		}
		defer conn.Close()
		to := &net.UDPAddr{IP: net.ParseIP(addr), Port: g.port}
		payload := make([]byte, g.payload)
		for range n {
			byteorder.BigEndian.PutUint32(payload, uint32(g.sent))
			if _, err := conn.WriteToUDP(payload, to); err != nil {
				return fmt.Errorf("send frame %d from CPU %d: %w", g.sent, g.cpu, err)
			}
			g.sent++
		}
		return nil
	})
}

// sentFrame is a generator's frame as the file holds it.
type sentFrame struct {
	gen, seq int
	time     time.Time
}

// readSent reads the generators' frames from the file at path, checking
// that they are in timestamp order and that each generator's are in the
// order it sent them.
func readSent(t *testing.T, path string, generators int) []sentFrame {
	t.Helper()
	var frames []sentFrame
	next := make([]int, generators) // the lowest sequence number each may have next
	for i, p := range pcapngtest.Read(t, path).Packets {
		if len(p.Data) < payloadStart+4 {
			t.Fatalf("frame %d: %d bytes, not a generator's", i, len(p.Data))
		}
		gen := int(byteorder.BigEndian.Uint16(p.Data[udpDstOffset:])) - genPort(0)
		if gen < 0 || gen >= generators {
			t.Fatalf("frame %d: UDP port %d, not a generator's", i, gen+genPort(0))
		}
		f := sentFrame{gen: gen, seq: int(byteorder.BigEndian.Uint32(p.Data[payloadStart:])), time: p.Time}
		if n := len(frames); n > 0 && f.time.Before(frames[n-1].time) {
			t.Errorf("frame %d (generator %d, #%d) at %v comes after one at %v", i, f.gen, f.seq,
				f.time.Format(time.RFC3339Nano), frames[n-1].time.Format(time.RFC3339Nano))
		}
		if f.seq < next[gen] {
			t.Errorf("frame %d: generator %d's #%d after its #%d", i, gen, f.seq, next[gen]-1)
		}
		next[gen] = f.seq + 1
		frames = append(frames, f)
	}
	return frames
}

// byGenerator counts the frames of each generator.
func byGenerator(frames []sentFrame, generators int) []int {
	n := make([]int, generators)
	for _, f := range frames {
		n[f.gen]++
	}
	return n
}

// seqs is 0, 1, ..., n-1.
func seqs(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}
