package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/writer"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// compressKinds are --compress's kinds and the extension each adds.
var compressKinds = []struct{ name, ext string }{{"gzip", ".gz"}, {"lz4", ".lz4"}, {"zstd", ".zst"}}

// A bad --compress is one line naming what to give, exit 2, before
// anything is created.
func TestCompressBadValues(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "new.pcapng")
	taken := filepath.Join(dir, "taken.pcapng")
	if err := os.WriteFile(taken+".zst", []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown kind", []string{"record", "-i", "lo", "-w", out, "--compress", "bz2"}, exitUsage,
			`--compress "bz2": give gzip, lz4 or zstd (none keeps files as written)`},
		{"empty", []string{"record", "-i", "lo", "-w", out, "--compress", ""}, exitUsage,
			"--compress is empty: give gzip, lz4 or zstd (none keeps files as written)"},
		{"standard output", []string{"record", "-i", "lo", "-w", "-", "--compress", "zstd"}, exitUsage,
			"--compress compresses finished files, and standard output never is one: pipe it into a compressor instead (-w - | zstd -o FILE.pcapng.zst)"},
		{"replay printing frames", []string{"replay", "x.pcap", "--compress", "gzip"}, exitUsage,
			"rotation, --post-rotate and --compress need files: give one with -w FILE"},
		// As for the file's own name: a run time failure.
		{"compressed name taken", []string{"record", "-i", "lo", "-w", taken, "--compress", "zstd"}, exitRuntime,
			"output file " + taken + ".zst exists: use --force to overwrite it"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runRingcap(t, nil, tt.args...)
			if r.code != tt.code {
				t.Errorf("exit code %d, want %d", r.code, tt.code)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "ringcap: ") || !strings.Contains(lines[0], tt.want) {
				t.Errorf("stderr = %q, want one line saying %q", r.stderr, tt.want)
			}
		})
	}
	if names := pcapngtest.DirNames(t, dir); !slices.Equal(names, []string{"taken.pcapng.zst"}) {
		t.Errorf("refused runs left %q", names)
	}
}

// replayRotated replays in (in the corpus directory) into files of ten
// frames each named after dir/rot.pcapng, with extra arguments, and
// returns what dir holds.
func replayRotated(t *testing.T, in, dir string, extra ...string) []string {
	t.Helper()
	args := append([]string{in, "--all", "-s", "0", "-w", filepath.Join(dir, "rot.pcapng"), "--rotate-packets", "10"}, extra...)
	if r := replayIn(t, args...); r.code != 0 {
		t.Fatalf("replay %v: exit %d\n%s", args, r.code, r.stderr)
	}
	return pcapngtest.DirNames(t, dir)
}

// Files compressed by each kind hold the frames of the same replay's
// uncompressed files, as tshark and capinfos read them; -z gets each
// compressed file's name, and -W counts compressed files.
func TestCompressReplayRotated(t *testing.T) {
	bpftest.RequirePrivileges(t)
	plainDir := t.TempDir()
	plain := replayRotated(t, "protocols.pcap", plainDir)
	if len(plain) < 5 {
		t.Fatalf("the replay wrote %d files, want 5 or more", len(plain))
	}
	fields := []string{"frame.time_epoch", "frame.len", "frame.cap_len", "frame.protocols", "frame.interface_description"}
	for _, kind := range compressKinds {
		t.Run(kind.name, func(t *testing.T) {
			dir, logDir := t.TempDir(), t.TempDir()
			log := filepath.Join(logDir, "post-rotate.log")
			got := replayRotated(t, "protocols.pcap", dir, "--compress", kind.name, "-z", "echo >>"+log)
			var want, paths []string
			for _, name := range plain {
				want = append(want, name+kind.ext)
				paths = append(paths, filepath.Join(dir, name+kind.ext))
			}
			if !slices.Equal(got, want) {
				t.Fatalf("the directory holds %q, want %q", got, want)
			}
			for i, path := range paths {
				original := filepath.Join(plainDir, plain[i])
				if a, b := pcapngtest.Fields(t, path, fields...), pcapngtest.Fields(t, original, fields...); !slices.EqualFunc(a, b, slices.Equal) {
					t.Errorf("tshark reads %s as\n%q\nand %s as\n%q", path, a, original, b)
				}
				if a, _ := pcapngtest.Count(t, path, false); a != 10 && i < len(paths)-1 {
					t.Errorf("capinfos counts %d frames in %s, want 10", a, path)
				}
			}
			checkPostRotateLog(t, log, paths)

			maxDir := t.TempDir()
			got = replayRotated(t, "protocols.pcap", maxDir, "--compress", kind.name, "-W", "3")
			if want := want[len(want)-3:]; !slices.Equal(got, want) {
				t.Errorf("with -W 3 the directory holds %q, want %q", got, want)
			}
		})
	}
}

// Compressed files are what the store gets, byte for byte, and nothing
// else: with --upload, zstd unless --compress says otherwise.
func TestCompressUpload(t *testing.T) {
	p := newVethPair(t)
	srv := p.newStore(t)
	dir := t.TempDir()
	r := p.start(t, append([]string{"-w", filepath.Join(dir, "rot.pcapng"), "-q", "--rotate-packets", "2"}, uploadTo...)...)
	for range 5 {
		p.ping(t, 2000)
	}
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
	files, err := filepath.Glob(filepath.Join(dir, "rot_*.pcapng.zst"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 || len(pcapngtest.DirNames(t, dir)) != 3 {
		t.Fatalf("the directory holds %q, want 3 compressed files", pcapngtest.DirNames(t, dir))
	}
	checkStoreHolds(t, srv, files)
	if n := pcapngtest.CountFiles(t, files, false); n != 5 {
		t.Errorf("the files hold %d frames, want 5", n)
	}
}

// bigCapture writes a capture of protocols.pcap's frames repeated, n
// times, into dir, for a replay whose files take a while to compress.
func bigCapture(t *testing.T, dir string, n int) string {
	t.Helper()
	frames := pcapngtest.ReadPcap(t, filepath.Join(testdata, "protocols.pcap"))
	path := filepath.Join(dir, "big.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriterNanos(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for i := range n {
		for _, fr := range frames {
			at = at.Add(time.Microsecond)
			ci := gopacket.CaptureInfo{Timestamp: at, CaptureLength: len(fr.Data), Length: fr.Length}
			if err := w.WritePacket(ci, fr.Data); err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
		}
	}
	return path
}

// With --force a capture that does not rotate replaces the compressed
// file of an earlier run, as it replaces the file.
func TestCompressForce(t *testing.T) {
	bpftest.RequirePrivileges(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "one.pcapng")
	if err := os.WriteFile(out+".zst", []byte("an earlier capture"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := replayIn(t, "protocols.pcap", "--all", "-w", out, "--compress", "zstd", "--force"); r.code != 0 {
		t.Fatalf("replay: exit %d\n%s", r.code, r.stderr)
	}
	if names := pcapngtest.DirNames(t, dir); !slices.Equal(names, []string{"one.pcapng.zst"}) {
		t.Fatalf("the directory holds %q, want one.pcapng.zst", names)
	}
	if n, _ := pcapngtest.Count(t, out+".zst", false); n == 0 {
		t.Error("one.pcapng.zst holds no frame")
	}
}

// A compression cut short by SIGKILL leaves the file as written and no
// file under the compressed name; the next run with the same -w removes
// the partial file and compresses the one left.
func TestCompressSIGKILL(t *testing.T) {
	bpftest.RequirePrivileges(t)
	dir := t.TempDir()
	in := bigCapture(t, t.TempDir(), 1000) // 40 MB
	out := filepath.Join(dir, "rot.pcapng")
	args := []string{"replay", in, "--all", "-s", "0", "-w", out, "-C", "16MiB", "--compress", "gzip"}
	r := exec.Command(binary, args...)
	r.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	var partial string
	if !waitFor(time.Minute, func() bool {
		matches, _ := filepath.Glob(filepath.Join(dir, ".rot_*.pcapng.gz.partial"))
		if len(matches) > 0 {
			partial = matches[0]
		}
		return partial != ""
	}) {
		r.Process.Kill()
		t.Fatalf("no compression seen; the directory holds %q", pcapngtest.DirNames(t, dir))
	}
	// The compression runs in a process of its own, every thread at
	// the lowest priority, and gains no privilege.
	if threads := childThreads(t, r.Process.Pid); len(threads) == 0 {
		t.Error("no process of ringcap's compresses")
	} else {
		for _, th := range threads {
			if th.nice != 19 || th.policy != unix.SCHED_IDLE || !th.noNewPrivs {
				t.Errorf("a thread of the compressing process runs at nice %d, policy %d, no_new_privs %v; want 19, SCHED_IDLE, true", th.nice, th.policy, th.noNewPrivs)
			}
		}
	}
	r.Process.Signal(syscall.SIGKILL)
	r.Wait()
	original := filepath.Join(dir, strings.TrimSuffix(strings.TrimPrefix(filepath.Base(partial), "."), ".gz.partial"))
	if _, err := os.Stat(original + ".gz"); err == nil {
		t.Errorf("%s.gz exists after the compression was killed", original)
	}
	if n, _ := pcapngtest.Count(t, original, false); n == 0 {
		t.Errorf("%s holds no frame", original)
	}
	res := runRingcap(t, nil, append(args, "-q")...)
	if res.code != 0 {
		t.Fatalf("the next run: exit %d\n%s", res.code, res.stderr)
	}
	for _, name := range pcapngtest.DirNames(t, dir) {
		if !strings.HasSuffix(name, ".pcapng.gz") {
			t.Errorf("after the next run the directory holds %s", name)
		}
	}
	if n, _ := pcapngtest.Count(t, original+".gz", false); n == 0 {
		t.Errorf("%s.gz holds no frame", original)
	}
}

// A file that could not be compressed is reported with the option that
// asked for it.
func TestCompressErrorInFlagWords(t *testing.T) {
	err := &writer.CompressError{Path: "/c/rot_00001_20261203100000.pcapng", Kind: writer.Zstd, Err: syscall.ENOSPC}
	want := "--compress: compress /c/rot_00001_20261203100000.pcapng with zstd: no space left on device: the file is kept as written"
	if got := withFlags(err).Error(); got != want {
		t.Errorf("withFlags: %q, want %q", got, want)
	}
}

// threadPriority is a thread's nice value, scheduling policy and
// no_new_privs.
type threadPriority struct {
	nice, policy int
	noNewPrivs   bool
}

// childThreads reads the priority of every thread of pid's children.
func childThreads(t *testing.T, pid int) []threadPriority {
	t.Helper()
	var out []threadPriority
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, children := range tasks {
		b, _ := os.ReadFile(children)
		for _, child := range strings.Fields(string(b)) {
			stats, _ := filepath.Glob("/proc/" + child + "/task/*/stat")
			for _, stat := range stats {
				b, err := os.ReadFile(stat)
				if err != nil {
					continue // ended meanwhile
				}
				// After the command's name: the nice value is the
				// 17th field, the policy the 39th.
				f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
				nice, _ := strconv.Atoi(f[16])
				policy, _ := strconv.Atoi(f[38])
				status, _ := os.ReadFile(filepath.Join(filepath.Dir(stat), "status"))
				out = append(out, threadPriority{nice, policy, strings.Contains(string(status), "NoNewPrivs:\t1")})
			}
		}
	}
	return out
}
