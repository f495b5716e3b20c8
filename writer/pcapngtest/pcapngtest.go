// Package pcapngtest reads files in tests: with Wireshark's own engine,
// through tshark and capinfos, and with pcapgo; and makes the payloads
// that tests send and find again in them.
package pcapngtest

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/ringcap/ringcap/bpf/bpftest"
)

// rootWarning is what Wireshark's tools print whenever they run as root;
// it says nothing about the file.
const rootWarning = `Running as user "root" and group "root". This could be dangerous.`

// Run runs a Wireshark command line tool and returns its standard output.
// Anything it prints on standard error, such as a warning about a damaged
// file, fails t.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, warnings, err := run(t, name, args...)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, strings.Join(warnings, "\n"))
	}
	return out
}

func run(t testing.TB, name string, args ...string) (stdout string, warnings []string, err error) {
	t.Helper()
	bpftest.RequireTool(t, name)
	var out, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err = cmd.Run()
	for _, line := range strings.Split(stderr.String(), "\n") {
		if line = strings.TrimSpace(line); line != "" && line != rootWarning {
			warnings = append(warnings, line)
		}
	}
	return out.String(), warnings, err
}

// Count reads path with Wireshark's file reader, through capinfos, and
// returns how many packets it holds. A file whose last block is cut short
// fails t unless cutShortOK; cut says whether it was. capinfos reads a
// file as tshark does (both are wiretap), without dissecting it, in a
// few milliseconds where tshark takes half a second to start.
func Count(t testing.TB, path string, cutShortOK bool) (n int, cut bool) {
	t.Helper()
	out, warnings, err := run(t, "capinfos", "-M", "-c", path)
	const cutShort = "appears to have been cut short in the middle of a packet"
	for _, w := range warnings {
		switch {
		case strings.Contains(w, cutShort):
			cut = true
		case strings.Contains(w, "An error occurred after reading"), strings.Contains(w, "will continue anyway"):
			// capinfos's words around the same error
		default:
			t.Fatalf("capinfos -c %s: %v\n%s", path, err, strings.Join(warnings, "\n"))
		}
	}
	if (err != nil || len(warnings) > 0) && !(cut && cutShortOK) {
		t.Fatalf("capinfos -c %s: %v\n%s", path, err, strings.Join(warnings, "\n"))
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "Number of packets:"); ok {
			if n, err = strconv.Atoi(strings.TrimSpace(v)); err != nil {
				t.Fatalf("capinfos -c %s: %q", path, line)
			}
			return n, cut
		}
	}
	t.Fatalf("capinfos -c %s printed no packet count:\n%s", path, out)
	return 0, cut
}

// Fields reads path with tshark and returns, per packet, the values of the
// given fields.
func Fields(t testing.TB, path string, fields ...string) [][]string {
	t.Helper()
	// Tabs apart: descriptions hold commas.
	args := []string{"-r", path, "-T", "fields", "-E", "separator=/t"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSpace(Run(t, "tshark", args...)), "\n") {
		if line != "" {
			rows = append(rows, strings.Split(line, "\t"))
		}
	}
	return rows
}

// Packet is one packet of a file read with Read.
type Packet struct {
	Time   time.Time
	Length int // on the wire
	Data   []byte
}

// File is what Read finds in a pcapng file.
type File struct {
	Packets []Packet
	// Stats is the first interface's last Interface Statistics Block.
	Stats pcapgo.NgInterfaceStatistics
}

// Read reads a whole pcapng file with pcapgo; anything it cannot read
// fails t.
func Read(t testing.TB, path string) File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var file File
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		file.Packets = append(file.Packets, Packet{Time: ci.Timestamp, Length: ci.Length, Data: data})
	}
	ifc, err := r.Interface(0)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	file.Stats = ifc.Statistics
	return file
}

// ReadPcap reads a whole classic pcap file with pcapgo; anything it cannot
// read fails t.
func ReadPcap(t testing.TB, path string) []Packet {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var packets []Packet
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return packets
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		packets = append(packets, Packet{Time: ci.Timestamp, Length: ci.Length, Data: data})
	}
}

// Tcpdump returns the packets of the pcap file path that tcpdump -r
// selects with the filter expression expr: libpcap's own engine, the
// reference for expressions.
func Tcpdump(t testing.TB, path, expr string) []Packet {
	t.Helper()
	bpftest.RequireTool(t, "tcpdump")
	out := filepath.Join(t.TempDir(), "tcpdump.pcap")
	if msg, err := exec.Command("tcpdump", "-r", path, "-w", out, expr).CombinedOutput(); err != nil {
		t.Fatalf("tcpdump -r %s %q: %v\n%s", path, expr, err, msg)
	}
	return ReadPcap(t, out)
}

// CountFiles is Count summed over paths.
func CountFiles(t testing.TB, paths []string, cutShortOK bool) int {
	t.Helper()
	total := 0
	for _, path := range paths {
		n, _ := Count(t, path, cutShortOK)
		total += n
	}
	return total
}

// Times are the packets' times, which tell the frames of a corpus apart.
func Times(packets []Packet) []time.Time {
	var ts []time.Time
	for _, p := range packets {
		ts = append(ts, p.Time)
	}
	return ts
}

// Pattern is n bytes of payload that tell their offsets apart, different
// for each seed: a byte out of place, even by a multiple of 256, reads
// differently.
func Pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i/251) ^ seed
	}
	return b
}
