package writer

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/capture/packet"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// newPipe makes a named pipe in a directory of its own and reads it from
// a goroutine: the returned channel gets all it read, once the writer has
// closed it.
func newPipe(t *testing.T) (path string, read <-chan []byte) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "pipe")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := os.ReadFile(path)
		got <- b
	}()
	return path, got
}

// A named pipe with Pipe is written as standard output is: the header
// blocks, the packets and the statistics blocks, through the page cache;
// the pipe stays, and is not a finished file.
func TestPipe(t *testing.T) {
	path, read := newPipe(t)
	counters := &fakeCounters{received: 7, dropped: 1}
	var finished []string
	files, err := Create(Config{
		Path:     path,
		Pipe:     true,
		Options:  Options{Application: "ringcap test", Interfaces: testInterfaces[:1]},
		Now:      func() time.Time { return start },
		Counters: counters.read,
		Finished: func(path string) Release { finished = append(finished, path); return Release{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	if mode := files.IOMode(); mode != "buffered: a named pipe" {
		t.Errorf("IOMode() = %q, want buffered: a named pipe", mode)
	}
	var sent [][]byte
	for i := range 3 {
		data := pcapngtest.Pattern(100+i, byte(i))
		sent = append(sent, data)
		if err := files.WritePacket(packet.Packet{Time: start.Add(time.Duration(i) * time.Millisecond), Length: len(data), Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	if err := files.Close(); err != nil {
		t.Fatal(err)
	}
	if files.Current() != path || files.Count() != 0 || len(finished) != 0 {
		t.Errorf("Current() %q, Count() %d, finished %q: want the pipe's path, no file created, none finished", files.Current(), files.Count(), finished)
	}
	if st, err := os.Lstat(path); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("the pipe is gone or replaced: %v, %v", st, err)
	}
	out := filepath.Join(t.TempDir(), "read.pcapng")
	if err := os.WriteFile(out, <-read, 0o600); err != nil {
		t.Fatal(err)
	}
	got := pcapngtest.Read(t, out)
	if len(got.Packets) != len(sent) {
		t.Fatalf("read %d packets from the pipe, want %d", len(got.Packets), len(sent))
	}
	for i, p := range got.Packets {
		if !bytes.Equal(p.Data, sent[i]) {
			t.Errorf("packet %d differs from the one written", i)
		}
	}
	if got.Stats.PacketsReceived != 7 || got.Stats.PacketsDropped != 1 {
		t.Errorf("statistics block: %d received, %d dropped; want 7 and 1", got.Stats.PacketsReceived, got.Stats.PacketsDropped)
	}
}

// A reader that goes away ends the writes with EPIPE, which the caller
// can tell from a failing disk.
func TestPipeReaderGone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pipe")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	opened := make(chan *os.File, 1)
	go func() {
		f, err := os.Open(path)
		if err != nil {
			t.Error(err)
		}
		opened <- f
	}()
	files, err := Create(Config{Path: path, Pipe: true, Options: Options{Application: "ringcap test", Interfaces: testInterfaces[:1]}})
	if err != nil {
		t.Fatal(err)
	}
	(<-opened).Close()
	data := pcapngtest.Pattern(100, 0)
	err = files.WritePacket(packet.Packet{Time: start, Length: len(data), Data: data})
	if err == nil {
		err = files.Flush()
	}
	err = errors.Join(err, files.Close())
	if !errors.Is(err, syscall.EPIPE) {
		t.Errorf("writing after the reader closed the pipe: %v, want EPIPE", err)
	}
}

// Pipe takes a named pipe only, and one file.
func TestPipeRefused(t *testing.T) {
	dir := t.TempDir()
	fifo, regular, link := filepath.Join(dir, "fifo"), filepath.Join(dir, "file"), filepath.Join(dir, "link")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{Path: fifo, Pipe: true, Policy: Policy{Packets: 10}}, "rotation needs a file name, not a named pipe"},
		{Config{Path: regular, Pipe: true}, regular + " is a file, not a named pipe"},
		{Config{Path: link, Pipe: true}, link + " is a symbolic link, not a named pipe"},
		{Config{Path: filepath.Join(dir, "missing"), Pipe: true}, "no such file or directory"},
		{Config{Path: fifo}, "a named pipe, not a regular file"},
	} {
		err := tt.cfg.Check()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Check(%s, Pipe %v) = %v, want %q", tt.cfg.Path, tt.cfg.Pipe, err, tt.want)
		}
	}
}
