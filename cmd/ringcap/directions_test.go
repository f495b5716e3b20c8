package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// exchange runs a TCP exchange on port 5001: the sender's client sends
// up bytes and half-closes, the receiver's server answers with down
// bytes.
func (p *vethPair) exchange(t *testing.T, up, down []byte) {
	t.Helper()
	p.exchangeWith(t, rxAddr, up, down)
}

// exchangeWith is exchange with the receiver's address addr.
func (p *vethPair) exchangeWith(t *testing.T, addr string, up, down []byte) {
	t.Helper()
	var ln net.Listener
	inNetns(t, p.Rx, func() (err error) {
		ln, err = net.Listen("tcp4", addr+":5001")
		return err
	})
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		got, err := io.ReadAll(c)
		if err == nil && !bytes.Equal(got, up) {
			err = fmt.Errorf("server read %d bytes, not the %d sent", len(got), len(up))
		}
		if err == nil {
			_, err = c.Write(down)
		}
		served <- err
	}()
	var conn net.Conn
	inNetns(t, p.Tx, func() (err error) {
		conn, err = net.DialTimeout("tcp4", addr+":5001", 5*time.Second)
		return err
	})
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write(up); err != nil {
		t.Fatal(err)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, down) {
		t.Fatalf("client read %d bytes, not the %d sent", len(got), len(down))
	}
}

// followTCP reassembles the first TCP stream of the file with tshark, as
// Wireshark's Follow TCP Stream does: the bytes the client sent, and the
// bytes the server sent.
func followTCP(t *testing.T, path string) (client, server []byte) {
	t.Helper()
	out := pcapngtest.Run(t, "tshark", "-r", path, "-q", "-z", "follow,tcp,raw,0")
	// Between the "=====" lines: node 0's data unindented, node 1's
	// indented by a tab, hex. Node 0 sent the first frame in the file:
	// the server, where the file holds only what it sent.
	inside, serverFirst := false, false
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "====="):
			inside = !inside
			continue
		case strings.HasPrefix(line, "Node 0: "):
			serverFirst = strings.HasPrefix(line, "Node 0: "+rxAddr+":5001")
			continue
		case !inside, strings.HasPrefix(line, "Follow:"), strings.HasPrefix(line, "Filter:"),
			strings.HasPrefix(line, "Node 1:"), line == "":
			continue
		}
		to := &client
		if strings.HasPrefix(line, "\t") != serverFirst {
			to = &server
		}
		b, err := hex.DecodeString(strings.TrimSpace(line))
		if err != nil {
			t.Fatalf("tshark's follow output: %q: %v", line, err)
		}
		*to = append(*to, b...)
	}
	return client, server
}

// Both directions of a TCP exchange, and each alone: the file holds
// every byte each way, as tshark's Follow TCP Stream reassembles it, or
// none of the direction left out.
func TestRecordDirections(t *testing.T) {
	bpftest.RequireTool(t, "tshark")
	up, down := pcapngtest.Pattern(3<<20, 0x5a), pcapngtest.Pattern(1<<20, 0xa5)
	for _, tt := range []struct {
		direction      string
		upSeen, downOK bool
	}{
		{"", true, true}, // the default, inout
		{"in", true, false},
		{"out", false, true},
	} {
		name := tt.direction
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			p := newVethPair(t)
			path := filepath.Join(t.TempDir(), "tcp.pcapng")
			args := []string{"-i", rxIf, "-w", path, "--all", "-s", "0", "--ring-size", "64MiB"}
			wantLine := "(inbound, " + vethHook + "; outbound, tcx egress)"
			switch tt.direction {
			case "in":
				wantLine = "(inbound, " + vethHook + ")"
			case "out":
				wantLine = "(outbound, tcx egress)"
			}
			if tt.direction != "" {
				args = append(args, "-Q", tt.direction)
			}
			// Not startRecord, which would say -Q in for the default.
			r := p.startWrapped(t, nil, slices.Concat([]string{"record"}, args, []string{"tcp port 5001"})...)
			if !strings.Contains(r.errors(), "capturing on "+rxIf+" "+wantLine) {
				t.Errorf("first line does not name the hooks %s:\n%s", wantLine, r.errors())
			}
			p.exchange(t, up, down)
			if code := r.stop(t, os.Interrupt); code != 0 {
				t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
			}
			// The last line sums the hooks.
			lines := strings.Split(strings.TrimSpace(r.errors()), "\n")
			if !strings.HasSuffix(lines[len(lines)-1], " 0 dropped because the ring was full, 0 reserve failures") {
				t.Fatalf("frames were lost:\n%s", r.errors())
			}
			client, server := followTCP(t, path)
			if tt.upSeen != bytes.Equal(client, up) || (!tt.upSeen && len(client) > 0) {
				t.Errorf("the file holds %d bytes from the client, want %v of the %d sent", len(client), tt.upSeen, len(up))
			}
			if tt.downOK != bytes.Equal(server, down) || (!tt.downOK && len(server) > 0) {
				t.Errorf("the file holds %d bytes from the server, want %v of the %d sent", len(server), tt.downOK, len(down))
			}
			checkDirections(t, path, tt.direction)
			if tt.direction == "" {
				checkReplayKeepsDirections(t, path)
			}
		})
	}
}

// checkDirections checks that every frame's epb_flags gives the direction
// of its interface's description, and only the directions asked for.
func checkDirections(t *testing.T, path, direction string) {
	t.Helper()
	seen := map[string]int{}
	for _, row := range pcapngtest.Fields(t, path, "frame.packet_flags_direction", "frame.interface_description") {
		dir := map[string]string{"0x00000001": "inbound", "0x00000002": "outbound"}[row[0]]
		if !strings.HasPrefix(row[1], rxIf+": "+dir+", ") {
			t.Fatalf("a frame with epb_flags %s on interface %q", row[0], row[1])
		}
		seen[dir]++
	}
	want := map[string]bool{"inbound": direction != "out", "outbound": direction != "in"}
	for dir, ok := range want {
		if ok != (seen[dir] > 0) {
			t.Errorf("%d %s frames in the file with -Q %q", seen[dir], dir, direction)
		}
	}
}

// checkReplayKeepsDirections replays a two-direction capture with each
// build at ingress: every frame comes out with its direction, through
// the program of its direction.
func checkReplayKeepsDirections(t *testing.T, path string) {
	t.Helper()
	want := pcapngtest.Fields(t, path, "frame.packet_flags_direction", "frame.len", "frame.cap_len")
	for _, hook := range []string{"auto", "tc"} {
		out := filepath.Join(t.TempDir(), "replay-"+hook+".pcapng")
		r := runRingcap(t, nil, "replay", path, "-w", out, "--all", "-s", "0", "--hook", hook)
		if r.code != 0 {
			t.Fatalf("replay --hook %s: exit %d\n%s", hook, r.code, r.stderr)
		}
		got := pcapngtest.Fields(t, out, "frame.packet_flags_direction", "frame.len", "frame.cap_len")
		if !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("replay --hook %s: %d frames differ in direction or length from the %d recorded", hook, len(got), len(want))
		}
	}
}

// At MTU 1500 a TSO bulk send is not oversize, however long its
// super-packets; --all -s 0 records them whole, as tcpdump does. At MTU
// 9000, 3000-byte pings are oversize both ways.
func TestGSOAndJumboBothWays(t *testing.T) {
	t.Run("gso", func(t *testing.T) {
		p := newVethPairMTU(t, 1500)
		dir := t.TempDir()
		def, all := filepath.Join(dir, "default.pcapng"), filepath.Join(dir, "all.pcapng")
		rd := p.startRecord(t, "-Q", "out", "-i", rxIf, "-w", def, "tcp port 5001")
		ra := p.startRecord(t, "-Q", "out", "-i", rxIf, "-w", all, "--all", "-s", "0", "--ring-size", "64MiB", "tcp port 5001")
		p.exchange(t, pcapngtest.Pattern(1000, 1), pcapngtest.Pattern(4<<20, 2))
		for _, r := range []*ringcapProc{rd, ra} {
			if code := r.stop(t, os.Interrupt); code != 0 {
				t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
			}
		}
		if n, _ := pcapngtest.Count(t, def, false); n != 0 {
			t.Errorf("the default selection recorded %d frames of a bulk send at MTU 1500, want none", n)
		}
		longest := 0
		for _, row := range pcapngtest.Fields(t, all, "frame.len") {
			n, _ := strconv.Atoi(row[0])
			longest = max(longest, n)
		}
		if longest <= 1514 {
			t.Errorf("--all -s 0 recorded no super-packet (longest frame %d): the test sent no GSO packets", longest)
		}
		if _, server := followTCP(t, all); !bytes.Equal(server, pcapngtest.Pattern(4<<20, 2)) {
			t.Errorf("--all -s 0 holds %d bytes of the bulk send, want all %d", len(server), 4<<20)
		}
	})
	t.Run("jumbo pings", func(t *testing.T) {
		p := newVethPair(t)
		path := filepath.Join(t.TempDir(), "jumbo.pcapng")
		r := p.startRecord(t, "-Q", "inout", "-i", rxIf, "-w", path)
		p.ping(t, 3000)
		p.ping(t, 1000)
		if code := r.stop(t, os.Interrupt); code != 0 {
			t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
		}
		rows := pcapngtest.Fields(t, path, "frame.len", "icmp.type", "frame.packet_flags_direction")
		want := [][]string{{"3042", "8", "0x00000001"}, {"3042", "0", "0x00000002"}}
		if fmt.Sprint(rows) != fmt.Sprint(want) {
			t.Errorf("frames (length, icmp type, direction) = %v, want %v", rows, want)
		}
	})
}
