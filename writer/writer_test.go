package writer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/ringcap/ringcap/capture/packet"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

var (
	testInterfaces = []Interface{
		{Name: "eth0", Description: "XDP native mode", Filter: "l3len > 1500", SnapLen: 256, Queues: true},
		// As replayed: no queue.
		{Name: "eth1", Description: "XDP generic mode", Filter: "l3len > 1500", SnapLen: 256},
	}
	testOptions = Options{Application: "ringcap test", Hardware: "Test CPU", OS: "Linux 6.18.0-test", Interfaces: testInterfaces}
	// Nanoseconds that a microsecond resolution would lose.
	t0          = time.Date(2026, 11, 26, 12, 0, 0, 123456789, time.UTC)
	testPackets = []packet.Packet{
		{Interface: 0, Time: t0, Length: 1515, Queue: 3, Outbound: false, DropCount: 0, Data: pcapngtest.Pattern(256, 0)},
		{Interface: 1, Time: t0.Add(time.Millisecond + 1), Length: 9014, Queue: 5, Outbound: false, DropCount: 1 << 40, Data: pcapngtest.Pattern(256, 0)}, // queue not written
		{Interface: 0, Time: t0.Add(2 * time.Second), Length: 100, Queue: 0, Outbound: true, DropCount: 7, Data: pcapngtest.Pattern(100, 0)},
		{Interface: 1, Time: t0.Add(3 * time.Second), Length: 255, Queue: 0, Outbound: true, DropCount: 0, Data: pcapngtest.Pattern(253, 0)}, // needs block padding
	}
)

func writeTestFile(t *testing.T, out io.Writer) *Writer {
	t.Helper()
	w, err := New(out, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range testPackets {
		if err := w.WritePacket(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

func TestRoundTripNgReader(t *testing.T) {
	var buf bytes.Buffer
	if w := writeTestFile(t, &buf); w.Size() != int64(buf.Len()) {
		t.Errorf("Size() = %d, %d were written", w.Size(), buf.Len())
	}

	r, err := pcapgo.NewNgReader(&buf, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.SectionInfo().Application; got != "ringcap test" {
		t.Errorf("shb_userappl = %q", got)
	}
	for i, p := range testPackets {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if !ci.Timestamp.Equal(p.Time) || ci.Length != p.Length || ci.CaptureLength != len(p.Data) ||
			ci.InterfaceIndex != p.Interface || !bytes.Equal(data, p.Data) {
			t.Errorf("packet %d: read %+v, wrote %+v", i, ci, p)
		}
		want := pcapgo.NgEpbFlagDirectionInbound
		if p.Outbound {
			want = pcapgo.NgEpbFlagDirectionOutbound
		}
		if opts.Flags == nil || opts.Flags.Direction != want {
			t.Errorf("packet %d: flags %+v, want direction %d", i, opts.Flags, want)
		}
	}
	if _, _, err := r.ReadPacketData(); !errors.Is(err, io.EOF) {
		t.Errorf("after the last packet: %v, want EOF", err)
	}
	if r.NInterfaces() != len(testInterfaces) {
		t.Fatalf("%d interfaces, want %d", r.NInterfaces(), len(testInterfaces))
	}
	for i, want := range testInterfaces {
		got, _ := r.Interface(i)
		if got.Name != want.Name || got.Description != want.Description || got.Filter != want.Filter ||
			got.SnapLength != want.SnapLen || got.LinkType != layers.LinkTypeEthernet || got.TimestampResolution != 9 {
			t.Errorf("interface %d = %+v, want %+v", i, got, want)
		}
	}
}

// tshark is the reference: what it reads is what Wireshark shows.
func TestRoundTripTshark(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rt.pcapng")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, f)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	rows := pcapngtest.Fields(t, path, "frame.interface_name", "frame.len", "frame.cap_len",
		"frame.time_epoch", "frame.interface_description", "frame.packet_flags_direction", "frame.interface_queue",
		"frame.drop_count")
	if len(rows) != len(testPackets) {
		t.Fatalf("tshark read %d packets, want %d: %q", len(rows), len(testPackets), rows)
	}
	for i, p := range testPackets {
		ifc := testInterfaces[p.Interface]
		queue := ""
		if ifc.Queues {
			queue = strconv.Itoa(int(p.Queue))
		}
		direction := "0x00000001" // inbound
		if p.Outbound {
			direction = "0x00000002"
		}
		want := []string{ifc.Name, strconv.Itoa(p.Length), strconv.Itoa(len(p.Data)),
			epoch(p.Time), ifc.Description, direction, queue, strconv.FormatUint(p.DropCount, 10)}
		if !slices.Equal(rows[i], want) {
			t.Errorf("packet %d: tshark says %q, want %q", i, rows[i], want)
		}
	}
	info := pcapngtest.Run(t, "capinfos", "-M", path)
	for _, want := range []string{"Number of packets:   4", "Capture application: ringcap test",
		"Capture hardware:    Test CPU", "Capture oper-sys:    Linux 6.18.0-test",
		"Number of interfaces in file: 2", "Filter string = l3len > 1500", "Time precision = nanoseconds (9)"} {
		if !strings.Contains(info, want) {
			t.Errorf("capinfos does not say %q:\n%s", want, info)
		}
	}
}

func epoch(ts time.Time) string {
	return fmt.Sprintf("%d.%09d", ts.Unix(), ts.Nanosecond())
}

func epbCount(epb []bool) (n uint64) {
	for _, e := range epb {
		if e {
			n++
		}
	}
	return n
}

func TestWholeBlocks(t *testing.T) {
	var buf bytes.Buffer
	writeTestFile(t, &buf)
	file := buf.Bytes()
	// Block ends: walk the file as a reader would.
	var ends []int
	var epb []bool
	for off := 0; off < len(file); {
		epb = append(epb, binary.LittleEndian.Uint32(file[off:]) == 6)
		off += int(binary.LittleEndian.Uint32(file[off+4:]))
		ends = append(ends, off)
	}
	for n := 0; n <= len(file); n++ {
		want, wantPackets := 0, uint64(0)
		for i, e := range ends {
			if e <= n {
				want = e
				if epb[i] {
					wantPackets++
				}
			}
		}
		if got, packets := wholeBlocks(file[:n]); got != want || packets != wantPackets {
			t.Fatalf("wholeBlocks of the first %d bytes = %d, %d; want %d, %d", n, got, packets, want, wantPackets)
		}
	}
	if wantPackets := uint64(len(testPackets)); epbCount(epb) != wantPackets {
		t.Fatalf("the file has %d packet blocks, want %d", epbCount(epb), wantPackets)
	}
}

// shortFile takes room bytes, then fails as a full disk does, and records
// how it was cut back.
type shortFile struct {
	data []byte
	room int
}

func (f *shortFile) Write(p []byte) (int, error) {
	n := min(len(p), f.room-len(f.data))
	f.data = append(f.data, p[:n]...)
	if n < len(p) {
		return n, errors.New("no space left on device")
	}
	return n, nil
}

func (f *shortFile) Truncate(size int64) error {
	f.data = f.data[:size]
	return nil
}

// A write that fails part way leaves whole blocks only, and says how many
// packets they hold.
func TestWriteErrorKeepsWholeBlocks(t *testing.T) {
	var full bytes.Buffer
	writeTestFile(t, &full)
	for room := 0; room <= full.Len(); room += 7 {
		f := &shortFile{room: room}
		w, err := New(f, testOptions)
		if err == nil {
			err = w.Flush()
		}
		for _, p := range testPackets {
			if err == nil {
				err = w.WritePacket(p)
			}
		}
		if err == nil {
			err = w.Flush()
		}
		if room < full.Len() && err == nil {
			t.Fatalf("room %d: no error", room)
		}
		end, packets := wholeBlocks(f.data)
		if end != len(f.data) {
			t.Fatalf("room %d: the file ends %d bytes into a block", room, len(f.data)-end)
		}
		if !bytes.Equal(f.data, full.Bytes()[:len(f.data)]) {
			t.Fatalf("room %d: the file is not a prefix of the whole one", room)
		}
		if w != nil && w.Saved() != packets {
			t.Fatalf("room %d: Saved() = %d, the file holds %d packets", room, w.Saved(), packets)
		}
	}
}
