package writer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/capture/packet"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

var compressionKinds = []Compression{Gzip, LZ4, Zstd}

// writeRotated writes five frames a second apart into files of one frame
// each, compressed as compress says, and returns the harness, closed.
func writeRotated(t *testing.T, compress Compression, maxFiles int) *harness {
	t.Helper()
	h := newHarnessWith(t, &harness{t: t, compress: compress, maxFiles: maxFiles}, Policy{Packets: 1})
	for i := range 5 {
		h.write(time.Duration(i) * time.Second)
	}
	h.close()
	return h
}

// decompress reads a compressed file with the library of its kind, as
// its extension names it.
func decompress(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader
	switch filepath.Ext(path) {
	case ".gz":
		r, err = gzip.NewReader(f)
	case ".lz4":
		r = lz4.NewReader(f)
	case ".zst":
		var d *zstd.Decoder
		d, err = zstd.NewReader(f)
		r = d
	default:
		t.Fatalf("%s: no compressed file's extension", path)
	}
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}

// Each finished file is replaced by its compressed form, whose bytes are
// those an uncompressed run writes, and which Wireshark's reader
// (capinfos) reads with the same frames. Finished gets the compressed
// names, and no partial file is left.
func TestCompressRotated(t *testing.T) {
	plain := writeRotated(t, NoCompression, 0)
	plainNames := pcapngtest.DirNames(t, plain.dir)
	for _, kind := range compressionKinds {
		t.Run(kind.String(), func(t *testing.T) {
			h := writeRotated(t, kind, 0)
			var want []string
			for _, name := range plainNames {
				want = append(want, name+kind.Ext())
			}
			if got := pcapngtest.DirNames(t, h.dir); !slices.Equal(got, want) {
				t.Fatalf("directory holds %q, want %q", got, want)
			}
			for i, name := range plainNames {
				compressed := filepath.Join(h.dir, want[i])
				original, err := os.ReadFile(filepath.Join(plain.dir, name))
				if err != nil {
					t.Fatal(err)
				}
				if got := decompress(t, compressed); !bytes.Equal(got, original) {
					t.Errorf("%s holds %d bytes, not the %d of %s", want[i], len(got), len(original), name)
				}
				if n, _ := pcapngtest.Count(t, compressed, false); n != 1 {
					t.Errorf("capinfos counts %d frames in %s, want 1", n, want[i])
				}
			}
			var finished []string
			for _, path := range h.finished {
				finished = append(finished, filepath.Base(path))
			}
			if !slices.Equal(finished, want) {
				t.Errorf("Finished got %q, want %q", finished, want)
			}
		})
	}
}

// MaxFiles counts compressed files, and deletes them by their compressed
// names.
func TestCompressMaxFiles(t *testing.T) {
	plain := pcapngtest.DirNames(t, writeRotated(t, NoCompression, 2).dir)
	h := writeRotated(t, Zstd, 2)
	want := []string{plain[0] + ".zst", plain[1] + ".zst"}
	if got := pcapngtest.DirNames(t, h.dir); !slices.Equal(got, want) {
		t.Errorf("directory holds %q, want %q", got, want)
	}
}

// A run killed while compressing left a partial file and the original: the
// next run with the same -w removes the partial one, compresses the
// original, and counts it for MaxFiles.
func TestCompressAfterKill(t *testing.T) {
	dir := t.TempDir()
	original := filepath.Join(dir, "cap_00001_20261126095959.pcapng")
	partial := filepath.Join(dir, ".cap_00001_20261126095959.pcapng.zst.partial")
	content := plainFile(t)
	if err := os.WriteFile(original, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(partial, content[:10], 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarnessWith(t, &harness{t: t, dir: dir, compress: Zstd, maxFiles: 3}, Policy{Packets: 1})
	h.write(0)
	h.write(time.Second)
	h.close()
	names := pcapngtest.DirNames(t, dir)
	want := []string{"cap_00001_20261126095959.pcapng.zst", "cap_00002_20261126100007.pcapng.zst", "cap_00003_20261126100008.pcapng.zst"}
	if !slices.Equal(names, want) {
		t.Fatalf("directory holds %q, want %q", names, want)
	}
	if got := decompress(t, filepath.Join(dir, want[0])); !bytes.Equal(got, content) {
		t.Errorf("the earlier run's file compressed holds %d bytes, want %d", len(got), len(content))
	}
}

// plainFile is the bytes of a finished file of one frame.
func plainFile(t *testing.T) []byte {
	t.Helper()
	h := writeRotated(t, NoCompression, 0)
	b, err := os.ReadFile(filepath.Join(h.dir, pcapngtest.DirNames(t, h.dir)[0]))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Standard output is never compressed; a capture that does not rotate
// refuses a compressed name that is taken, as it refuses its own, and
// replaces it with Overwrite.
func TestCompressRefusals(t *testing.T) {
	if err := (Config{Path: "-", Compress: Zstd}).Check(); !errors.Is(err, ErrCompressStdout) {
		t.Errorf("standard output compressed: %v, want ErrCompressStdout", err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "one.pcapng")
	if err := os.WriteFile(path+".gz", []byte("an earlier capture"), 0o600); err != nil {
		t.Fatal(err)
	}
	var exists *ExistError
	if err := (Config{Path: path, Compress: Gzip}).Check(); !errors.As(err, &exists) || exists.Path != path+".gz" {
		t.Errorf("a taken compressed name: %v, want an ExistError for it", err)
	}
	files, err := Create(Config{Path: path, Compress: Gzip, Overwrite: true, Options: Options{Interfaces: testInterfaces[:1]}})
	if err != nil {
		t.Fatal(err)
	}
	if err := files.Close(); err != nil {
		t.Fatal(err)
	}
	if files.Current() != path+".gz" {
		t.Errorf("Current is %s after Close, want %s.gz", files.Current(), path)
	}
	if got := pcapngtest.DirNames(t, dir); !slices.Equal(got, []string{"one.pcapng.gz"}) {
		t.Errorf("directory holds %q, want one.pcapng.gz", got)
	}
	if n, _ := pcapngtest.Count(t, path+".gz", false); n != 0 {
		t.Errorf("capinfos counts %d frames, want 0", n)
	}
}

// A file that cannot be compressed (the disk full) is kept as written and
// handed on so, in one CompressError, and no partial file stays.
func TestCompressDiskFull(t *testing.T) {
	dir := pcapngtest.Mount(t, "tmpfs", 1<<20)
	path := filepath.Join(dir, "full.pcapng")
	var failures []error
	var finished []string
	files, err := Create(Config{
		Path: path, Compress: Gzip, Options: Options{Interfaces: testInterfaces[:1]},
		CompressFailed: func(err error) { failures = append(failures, err) },
		Finished:       func(path string) Release { finished = append(finished, path); return Release{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	// Random frames do not compress: the file takes more than half of
	// the disk, and its compressed form does not fit beside it.
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 9 {
		data := make([]byte, 65000)
		for i := range data {
			data[i] = byte(rnd.Uint32())
		}
		if err := files.WritePacket(packet.Packet{Time: start, Length: len(data), Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	if err := files.Close(); err != nil {
		t.Fatal(err)
	}
	var compressErr *CompressError
	if len(failures) != 1 || !errors.As(failures[0], &compressErr) || !errors.Is(failures[0], syscall.ENOSPC) {
		t.Fatalf("failures %v, want one CompressError of a full disk", failures)
	}
	if got := pcapngtest.DirNames(t, dir); !slices.Equal(got, []string{"full.pcapng"}) {
		t.Errorf("directory holds %q, want full.pcapng only", got)
	}
	if !slices.Equal(finished, []string{path}) {
		t.Errorf("Finished got %q, want %s", finished, path)
	}
	if n, _ := pcapngtest.Count(t, path, false); n != 9 {
		t.Errorf("capinfos counts %d frames, want 9", n)
	}
}

// The compression runs on a thread at nice 19, SCHED_IDLE, in the idle
// I/O class (Finished is called on it), and the capture's own threads
// keep theirs.
func TestCompressLowPriority(t *testing.T) {
	var nices []int
	files, err := Create(Config{
		Path: filepath.Join(t.TempDir(), "nice.pcapng"), Compress: Zstd, Policy: Policy{Packets: 1},
		Options: Options{Interfaces: testInterfaces[:1]},
		Finished: func(string) Release {
			nices = append(nices, threadNice(t))
			if class, _, err := unix.Syscall(unix.SYS_IOPRIO_GET, 1, uintptr(unix.Gettid()), 0); err != 0 || class != ioprioIdle {
				t.Errorf("files compressed in I/O priority %#x (%v), want the idle class", class, err)
			}
			if attr, err := unix.SchedGetAttr(0, 0); err != nil || attr.Policy != unix.SCHED_IDLE {
				t.Errorf("files compressed in scheduling policy %v (%v), want SCHED_IDLE", attr, err)
			}
			return Release{}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := files.WritePacket(packet.Packet{Time: start.Add(time.Duration(i) * time.Second), Length: 100, Data: pcapngtest.Pattern(100, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := files.Close(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(nices, []int{19, 19, 19}) {
		t.Errorf("files compressed at nice %v, want 19 each", nices)
	}
	if n := threadNice(t); n != 0 {
		t.Errorf("the test's thread runs at nice %d, want 0", n)
	}
}

// threadNice reads the nice value of the calling thread.
func threadNice(t *testing.T) int {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", unix.Gettid()))
	if err != nil {
		t.Error(err)
		return -100
	}
	// The fields after the command's name, which ends with ')': the
	// nice value is the 19th field of the line, the 17th of these.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	nice, err := strconv.Atoi(fields[16])
	if err != nil {
		t.Error(err)
	}
	return nice
}
