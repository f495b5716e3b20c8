package upload

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/capture/cpustat"
	"github.com/ringcap/ringcap/writer"
	"github.com/ringcap/ringcap/writer/upload/s3test"
)

const netnsEnv = "RINGCAP_UPLOAD_TEST_NETNS"

// As root, the tests run in a network namespace of their own, whose
// loopback the S3 server listens on: their traffic cannot leave it.
func TestMain(m *testing.M) {
	if os.Geteuid() == 0 && os.Getenv(netnsEnv) == "" {
		cmd := exec.Command("unshare", append([]string{"--net", "sh", "-c", `ip link set lo up && exec "$0" "$@"`}, os.Args...)...)
		cmd.Env = append(os.Environ(), netnsEnv+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			if exit, ok := err.(*exec.ExitError); ok {
				os.Exit(exit.ExitCode())
			}
			fmt.Fprintln(os.Stderr, "run the tests in a network namespace of their own:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// stop ends the uploads as ringcap does at exit: those queued go on until
// none is left or timeout has passed. It returns the files not sent.
func stop(u *Uploader, timeout time.Duration) (unsent []string) {
	u.Drain(timeout)
	return u.Wait()
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url, bucket, prefix, err string
	}{
		{url: "s3://captures", bucket: "captures"},
		{url: "s3://captures/", bucket: "captures"},
		{url: "s3://captures/node-1/eth0/", bucket: "captures", prefix: "node-1/eth0"},
		{url: "http://store:9000/captures", err: `"http://store:9000/captures": give s3://BUCKET/PREFIX (the store's address, if not AWS, goes in AWS_ENDPOINT_URL)`},
		{url: "s3://", err: `"s3://": no bucket: give s3://BUCKET/PREFIX`},
		{url: "s3:///prefix", err: `"s3:///prefix": no bucket: give s3://BUCKET/PREFIX`},
		{url: "captures/prefix", err: `"captures/prefix": give s3://BUCKET/PREFIX (the store's address, if not AWS, goes in AWS_ENDPOINT_URL)`},
		{url: "s3://captures:9000/p", err: `"s3://captures:9000/p": give s3://BUCKET/PREFIX, nothing else`},
	} {
		got, err := ParseURL(tc.url)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("ParseURL(%q) = %v, %v; want error %q", tc.url, got, err, tc.err)
			}
			continue
		}
		if err != nil || got.Bucket != tc.bucket || got.Prefix != tc.prefix {
			t.Errorf("ParseURL(%q) = %+v, %v; want bucket %q, prefix %q", tc.url, got, err, tc.bucket, tc.prefix)
		}
	}
	if key := (Target{Bucket: "b", Prefix: "node-1"}).Key("/var/lib/ringcap/c_00001_20261201.pcapng"); key != "node-1/c_00001_20261201.pcapng" {
		t.Errorf("key %q", key)
	}
}

// lines collects the uploader's lines.
type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.l = append(l.l, fmt.Sprintf(format, args...))
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.l, "\n")
}

func (l *lines) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.l {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

// newUploader starts a server and an uploader to it, with short waits
// between tries and 5 MiB parts, S3's smallest.
func newUploader(t *testing.T, prefix string) (*Uploader, *s3test.Server, *lines) {
	t.Helper()
	bpftest.RequirePrivileges(t)
	srv := s3test.New(t)
	srv.SetEnv(t)
	log := &lines{}
	return uploaderTo(t, srv, prefix, log, false), srv, log
}

// uploaderTo starts an uploader to srv's bucket, stopped when t ends.
func uploaderTo(t *testing.T, srv *s3test.Server, prefix string, log *lines, del bool) *Uploader {
	t.Helper()
	u, err := New(context.Background(), Config{Target: Target{Bucket: srv.Bucket, Prefix: prefix}, Logf: log.logf, Delete: del,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, PartSize: 5 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(u, 0) })
	return u
}

// writeFile writes size random bytes to dir/name.
func writeFile(t *testing.T, dir, name string, size int) (string, []byte) {
	t.Helper()
	return writeFileB(t, dir, name, size)
}

func writeFileB(t testing.TB, dir, name string, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	r := rand.NewChaCha8([32]byte{byte(size), byte(size >> 8), byte(size >> 16)})
	r.Read(data)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, data
}

// waitRelease waits at most timeout for r's Verdict: released says it
// lets the file go, answered that it came.
func waitRelease(t testing.TB, r writer.Release, timeout time.Duration) (released, answered bool) {
	t.Helper()
	select {
	case <-r.Decided():
		return r.Wait() == writer.Deletable, true
	case <-time.After(timeout):
		return false, false
	}
}

// Files small and large (in parts) arrive byte for byte, each released
// only once it is there, and marked so that a restart skips them.
func TestSend(t *testing.T) {
	u, srv, log := newUploader(t, "node-1")
	dir := t.TempDir()
	sizes := []int{0, 1000, 5 << 20, 12<<20 + 3}
	var paths []string
	var releases []writer.Release
	for i, size := range sizes {
		path, _ := writeFile(t, dir, fmt.Sprintf("c_%05d.pcapng", i+1), size)
		paths = append(paths, path)
		releases = append(releases, u.Send(path))
	}
	var total uint64
	for i, release := range releases {
		if ok, answered := waitRelease(t, release, time.Minute); !ok || !answered {
			t.Fatalf("%s not released (%v, %v):\n%s", paths[i], ok, answered, log)
		}
		want, _ := os.ReadFile(paths[i])
		got, err := srv.Object("node-1/" + filepath.Base(paths[i]))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("the store holds %d bytes of %s (%v), want its %d", len(got), paths[i], err, len(want))
		}
		buf := make([]byte, 256)
		n, err := unix.Getxattr(paths[i], uploadedAttr, buf)
		if err != nil || !strings.HasPrefix(string(buf[:n]), "s3://captures/node-1/"+filepath.Base(paths[i])+" ") {
			t.Errorf("%s marked %q (%v)", paths[i], buf[:max(n, 0)], err)
		}
		total += uint64(sizes[i])
	}
	if st := u.Stats(); st.Files != uint64(len(sizes)) || st.Bytes != total || st.Failures != 0 || st.Waiting != 0 {
		t.Errorf("stats %+v, want %d files, %d bytes, no failure, none waiting", st, len(sizes), total)
	}
	if unsent := stop(u, time.Second); len(unsent) != 0 {
		t.Errorf("unsent after all were sent: %v", unsent)
	}
	if log.String() != "" {
		t.Errorf("lines without a failure:\n%s", log)
	}
}

// While the store is away, files wait and the tries are lines; once it is
// back, every file arrives, in order.
func TestStoreAway(t *testing.T) {
	u, srv, log := newUploader(t, "")
	srv.Kill()
	dir := t.TempDir()
	var releases []writer.Release
	for i := range 3 {
		path, _ := writeFile(t, dir, fmt.Sprintf("c_%05d.pcapng", i+1), 6<<20+i)
		releases = append(releases, u.Send(path))
	}
	for end := time.Now().Add(30 * time.Second); log.count("trying again") < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no tries while the store is away:\n%s", log)
		}
	}
	if st := u.Stats(); st.Waiting != 3 || st.Failures < 3 || st.Files != 0 {
		t.Errorf("stats while the store is away: %+v", st)
	}
	if !strings.Contains(log.String(), "the store does not answer") {
		t.Errorf("the lines do not say the store does not answer:\n%s", log)
	}
	for _, r := range releases {
		select {
		case <-r.Decided():
			t.Fatal("a file was released while the store was away")
		default:
		}
	}
	srv.Start()
	for i, release := range releases {
		if ok, _ := waitRelease(t, release, time.Minute); !ok {
			t.Fatalf("file %d not sent once the store is back:\n%s", i+1, log)
		}
	}
	if got := srv.Keys(""); !slices.Equal(got, []string{"c_00001.pcapng", "c_00002.pcapng", "c_00003.pcapng"}) {
		t.Errorf("the store holds %v", got)
	}
	if !strings.Contains(log.String(), "the store answers again") {
		t.Errorf("no line says the store is back:\n%s", log)
	}
}

// Wrong credentials: a line per try, the file kept; stop gives it back
// unsent within its timeout.
func TestWrongCredentials(t *testing.T) {
	bpftest.RequirePrivileges(t)
	srv := s3test.New(t)
	srv.SetEnv(t)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	log := &lines{}
	bad := uploaderTo(t, srv, "", log, false)
	path, _ := writeFile(t, t.TempDir(), "c.pcapng", 1000)
	release := bad.Send(path)
	for end := time.Now().Add(30 * time.Second); log.count("trying again") < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no failures with a wrong secret:\n%s", log)
		}
	}
	if !strings.Contains(log.String(), "SignatureDoesNotMatch") {
		t.Errorf("the lines do not give the store's reason:\n%s", log)
	}
	start := time.Now()
	unsent := stop(bad, 100*time.Millisecond)
	if !slices.Equal(unsent, []string{path}) {
		t.Errorf("unsent %v, want %s", unsent, path)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("stop took %v", took)
	}
	if ok, answered := waitRelease(t, release, time.Second); ok || !answered {
		t.Errorf("released %v (answered %v), want false: the file must stay", ok, answered)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the file is gone: %v", err)
	}
	if ok, answered := waitRelease(t, bad.Send(path), time.Second); ok || !answered {
		t.Errorf("a file sent after stop: released %v (answered %v), want false at once", ok, answered)
	}
}

// A file an earlier run sent is not sent again, whether it carries the
// mark or not (a file system without xattrs); one it did not send is
// sent; --upload-delete removes both once the store holds them.
func TestResume(t *testing.T) {
	u, srv, log := newUploader(t, "p")
	dir := t.TempDir()
	sent, _ := writeFile(t, dir, "c_00001.pcapng", 3000)
	unmarked, _ := writeFile(t, dir, "c_00002.pcapng", 7<<20)
	for _, path := range []string{sent, unmarked} {
		if ok, _ := waitRelease(t, u.Send(path), time.Minute); !ok {
			t.Fatalf("%s not sent:\n%s", path, log)
		}
	}
	if err := unix.Removexattr(unmarked, uploadedAttr); err != nil {
		t.Fatal(err)
	}
	stop(u, time.Second)
	before := map[string]time.Time{}
	for _, key := range srv.Keys("p") {
		before[key] = modTime(t, srv, key)
	}
	left, _ := writeFile(t, dir, "c_00003.pcapng", 4000)
	time.Sleep(10 * time.Millisecond) // a second upload would show in the objects' times

	next := uploaderTo(t, srv, "p", log, true)
	for _, path := range []string{sent, unmarked, left} {
		if ok, _ := waitRelease(t, next.Resume(path), time.Minute); !ok {
			t.Fatalf("%s not released:\n%s", path, log)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("%s still here with --upload-delete (%v)", path, err)
		}
	}
	for key, at := range before {
		if got := modTime(t, srv, key); !got.Equal(at) {
			t.Errorf("%s was sent again (%v, before %v)", key, got, at)
		}
	}
	if got := srv.Keys("p"); len(got) != 3 {
		t.Errorf("the store holds %v, want 3 files", got)
	}
	if st := next.Stats(); st.Files != 1 || st.Found != 2 || st.Waiting != 0 {
		t.Errorf("stats %+v, want 1 file sent and 2 found in the store", st)
	}
}

func modTime(t *testing.T, srv *s3test.Server, key string) time.Time {
	t.Helper()
	fi, err := os.Stat(srv.Path(key))
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}

// BenchmarkSend uploads a 64 MiB file (a rotated file's size in
// ringbench) from memory to the server on loopback, and reports the
// uploader's CPU time per MiB: the process's, less the server's, which
// runs apart.
func BenchmarkSend(b *testing.B) {
	bpftest.RequirePrivileges(b)
	srv := s3test.New(b)
	srv.SetEnv(b)
	log := &lines{}
	u, err := New(context.Background(), Config{Target: Target{Bucket: srv.Bucket}, Logf: log.logf})
	if err != nil {
		b.Fatal(err)
	}
	defer stop(u, 0)
	dir, err := os.MkdirTemp("/dev/shm", "ringcap-upload-bench")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	const size = 64 << 20
	path, _ := writeFileB(b, dir, "c_00001.pcapng", size)
	cpu0, err := cpustat.Process()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	for b.Loop() {
		if ok, _ := waitRelease(b, u.Send(path), time.Minute); !ok {
			b.Fatalf("not sent:\n%s", log)
		}
	}
	cpu1, _ := cpustat.Process()
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N*size>>20), "cpu-µs/MiB")
}

// SettleStored tells a file the store holds by its mark alone, counts it
// as found and deletes it with Delete; an unmarked file, or one marked for
// another target or size, is not settled.
func TestSettleStored(t *testing.T) {
	u, srv, log := newUploader(t, "p")
	dir := t.TempDir()
	path, _ := writeFile(t, dir, "c_00001.pcapng", 3000)
	other, _ := writeFile(t, dir, "c_00002.pcapng", 3000)
	if ok, _ := waitRelease(t, u.Send(path), time.Minute); !ok {
		t.Fatalf("not sent:\n%s", log)
	}
	elsewhere := uploaderTo(t, srv, "q", log, true)
	if elsewhere.SettleStored(path) || elsewhere.SettleStored(other) {
		t.Error("settled by an uploader to another prefix, or unmarked")
	}
	next := uploaderTo(t, srv, "p", log, true)
	if !next.SettleStored(path) {
		t.Fatal("a marked file is not settled")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("Delete left the settled file (%v)", err)
	}
	if st := next.Stats(); st.Found != 1 || st.Files != 0 {
		t.Errorf("stats %+v, want 1 found", st)
	}
}

// A name that is a link is sent nothing of, nor deleted, whatever it
// points at: another user may have planted it where ringcap's file was.
func TestSendsNoLink(t *testing.T) {
	u, srv, log := newUploader(t, "p")
	dir := t.TempDir()
	target, data := writeFile(t, dir, "secret", 3000)
	link := filepath.Join(dir, "c_00001.pcapng")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if ok, answered := waitRelease(t, u.Send(link), time.Minute); ok || !answered {
		t.Fatalf("the link was released as sent (%v, %v):\n%s", ok, answered, log)
	}
	if got, err := srv.Object("p/c_00001.pcapng"); err == nil {
		t.Errorf("the store holds %d bytes for the link", len(got))
	}
	if !strings.Contains(log.String(), "c_00001.pcapng: not a regular file: not sent") {
		t.Errorf("no line says the link was not sent:\n%s", log)
	}
	deleting := uploaderTo(t, srv, "p", log, true)
	if deleting.SettleStored(link) {
		t.Error("a link is settled")
	}
	if got, err := os.ReadFile(target); err != nil || !bytes.Equal(got, data) {
		t.Errorf("the link's target changed (%v)", err)
	}
	if _, err := os.Lstat(link); err != nil {
		t.Errorf("the link was removed: %v", err)
	}
}
