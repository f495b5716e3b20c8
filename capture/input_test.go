package capture

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// corpusFiles are the generated captures, good and broken: the replay
// corpus and the fuzz target's seeds.
func corpusFiles(t testing.TB) []string {
	t.Helper()
	var paths []string
	for _, pattern := range []string{"../testdata/*.pcap*", "../testdata/broken/*"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, m...)
	}
	if len(paths) < 10 {
		t.Fatalf("found %d corpus files; go generate ./testdata writes them", len(paths))
	}
	return paths
}

// readAll reads every frame, as Replay does, and checks what Next
// promises of each.
func readAll(t testing.TB, r io.Reader) (frames int, err error) {
	in, err := NewInput(r)
	if err != nil {
		return 0, err
	}
	for {
		f, err := in.Next()
		if errors.Is(err, io.EOF) {
			return frames, nil
		}
		if err != nil {
			return frames, err
		}
		if f.Interface < 0 || f.Interface >= len(in.Interfaces()) {
			t.Fatalf("frame %d on interface %d of %d", frames, f.Interface, len(in.Interfaces()))
		}
		if len(f.Data) > f.Length {
			t.Fatalf("frame %d: %d captured bytes of a %d-byte frame", frames, len(f.Data), f.Length)
		}
		frames++
	}
}

// FuzzInput feeds the input reader arbitrary files: it may refuse them,
// never panic.
func FuzzInput(f *testing.F) {
	for _, path := range corpusFiles(f) {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		readAll(t, bytes.NewReader(b))
	})
}

func TestInputMapsToEthernet(t *testing.T) {
	tests := []struct {
		file   string
		frames int
		first  int // first frame's length as Ethernet
		ifaces int
	}{
		{"threshold.pcapng", 23, 1513, 1},
		{"multi-interface.pcapng", 7, 1414, 3},
		{"mixed-linktypes.pcapng", 6, 1513, 2},
		{"multi-section.pcapng", 13, 1513, 5},
		{"classic.pcap", 5, 1513, 1},
		{"raw-ip.pcap", 6, 1513, 1},
		{"linux-sll.pcap", 6, 1513, 1},
		{"snaplen-128.pcap", 3, 1514, 1},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			in, closer, err := OpenInput(filepath.Join("../testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer closer.Close()
			first, err := in.Next()
			if err != nil {
				t.Fatal(err)
			}
			if first.Length != tt.first || len(first.Data) < 14 {
				t.Fatalf("first frame: length %d, %d bytes; want %d", first.Length, len(first.Data), tt.first)
			}
			if et := layers.EthernetType(uint16(first.Data[12])<<8 | uint16(first.Data[13])); et != layers.EthernetTypeIPv4 {
				t.Errorf("first frame's EtherType %v, want IPv4", et)
			}
			n := 1
			for ; ; n++ {
				if _, err := in.Next(); errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					t.Fatal(err)
				}
			}
			if n != tt.frames || len(in.Interfaces()) != tt.ifaces {
				t.Errorf("%d frames on %d interfaces, want %d on %d", n, len(in.Interfaces()), tt.frames, tt.ifaces)
			}
		})
	}
}

// In a file of several sections, each section numbers its interfaces from
// 0 again: its frames must land on its own interfaces, which come after
// the earlier sections'.
func TestInputSections(t *testing.T) {
	in, closer, err := OpenInput("../testdata/multi-section.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	var got []string
	for {
		f, err := in.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ifc := in.Interfaces()[f.Interface]
		got = append(got, fmt.Sprintf("%d:%s/%v", f.Interface, ifc.Name, ifc.LinkType))
	}
	// testdata/gen: mixed-linktypes.pcapng (eth0, tun0), then
	// multi-interface.pcapng (eth0, eth1, eth2).
	want := []string{
		"0:eth0/Ethernet", "0:eth0/Ethernet", "0:eth0/Ethernet",
		"1:tun0/Raw", "1:tun0/Raw", "1:tun0/Raw",
		"2:eth0/Ethernet", "3:eth1/Ethernet", "4:eth2/Ethernet", "3:eth1/Ethernet",
		"2:eth0/Ethernet", "4:eth2/Ethernet", "4:eth2/Ethernet",
	}
	if !slices.Equal(got, want) {
		t.Errorf("frames on interfaces\n%q, want\n%q", got, want)
	}
}
