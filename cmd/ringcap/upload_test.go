package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/writer/pcapngtest"
	"github.com/ringcap/ringcap/writer/upload/s3test"
)

// uploadTo uploads to the test server's bucket under node-1, retrying
// every 200ms at most: the tests restart the store.
var uploadTo = []string{"--upload", "s3://captures/node-1", "--upload-retry-max", "200ms"}

// uploadArgs are uploadTo with the files as written: the tests of the
// uploads count on their sizes (a disk they fill) and names;
// compress_test.go uploads compressed files, the default.
var uploadArgs = append(slices.Clip(uploadTo), "--compress", "none")

// newStore starts the S3 server on loopback in the receiving namespace,
// where ringcap runs, and gives ringcap its address and credentials.
func (p *vethPair) newStore(t *testing.T) *s3test.Server {
	t.Helper()
	srv := s3test.New(t, "ip", "netns", "exec", p.Rx)
	srv.SetEnv(t)
	return srv
}

// checkStoreHolds checks that the store holds each local file under
// node-1, byte for byte, and nothing else.
func checkStoreHolds(t *testing.T, srv *s3test.Server, paths []string) {
	t.Helper()
	var want []string
	for _, path := range paths {
		key := "node-1/" + filepath.Base(path)
		want = append(want, key)
		local, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if stored, err := srv.Object(key); err != nil || !bytes.Equal(stored, local) {
			t.Errorf("the store holds %d bytes of %s (%v), the file %d", len(stored), key, err, len(local))
		}
	}
	slices.Sort(want)
	if got := srv.Keys("node-1"); !slices.Equal(got, want) {
		t.Errorf("the store holds %q, want %q", got, want)
	}
}

func waitKeys(t *testing.T, srv *s3test.Server, n int, r *ringcapProc) {
	t.Helper()
	if !waitFor(30*time.Second, func() bool { return len(srv.Keys("node-1")) >= n }) {
		t.Fatalf("the store holds %q, want %d files:\n%s", srv.Keys("node-1"), n, r.errors())
	}
}

// The store killed and started again in the middle of a rotating
// capture (a file rotated by packets ends when the next packet comes:
// 2k+1 pings finish k files of two). Every file arrives byte for byte,
// after its -z command.
func TestUploadStoreRestarts(t *testing.T) {
	p := newVethPair(t)
	srv := p.newStore(t)
	dir, logDir := t.TempDir(), t.TempDir()
	log := filepath.Join(logDir, "post-rotate.log")
	r := p.start(t, append([]string{"-w", filepath.Join(dir, "rot.pcapng"), "-q", "--rotate-packets", "2", "-z", "echo >>" + log}, uploadArgs...)...)
	for range 5 {
		p.ping(t, 2000)
	}
	waitKeys(t, srv, 2, r)
	srv.Kill()
	for range 6 {
		p.ping(t, 2000)
	}
	if !waitFor(30*time.Second, func() bool { return strings.Contains(r.errors(), "trying again") }) {
		t.Fatalf("no line says an upload failed while the store is away:\n%s", r.errors())
	}
	srv.Start()
	for range 2 {
		p.ping(t, 2000)
	}
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
	files := rotatedFiles(t, dir)
	if len(files) < 6 {
		t.Fatalf("%d files, want at least 6", len(files))
	}
	checkStoreHolds(t, srv, files)
	checkPostRotateLog(t, log, files)
	if want := "files ("; !strings.Contains(r.errors(), want) || strings.Contains(r.errors(), "not sent") {
		t.Errorf("the summary does not say every file was sent:\n%s", r.errors())
	}
}

// ringcap starts while the store is down, says so once, and sends the
// files once it is up.
func TestUploadStoreDownAtStart(t *testing.T) {
	p := newVethPair(t)
	srv := p.newStore(t)
	srv.Kill()
	dir := t.TempDir()
	r := p.start(t, append([]string{"-w", filepath.Join(dir, "rot.pcapng"), "-q", "--rotate-packets", "2"}, uploadArgs...)...)
	if !waitFor(30*time.Second, func() bool { return strings.Contains(r.errors(), "files are kept, and sent once it answers") }) {
		t.Fatalf("no line says the store does not answer:\n%s", r.errors())
	}
	for range 4 {
		p.ping(t, 2000)
	}
	srv.Start()
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
	checkStoreHolds(t, srv, rotatedFiles(t, dir))
}

// A run killed with files unsent: the next run with the same -w and
// --upload sends them, the same bytes, and not those the store holds.
func TestUploadAfterSIGKILL(t *testing.T) {
	p := newVethPair(t)
	srv := p.newStore(t)
	dir := t.TempDir()
	args := append([]string{"-w", filepath.Join(dir, "rot.pcapng"), "-q", "--rotate-packets", "2"}, uploadArgs...)
	r := p.start(t, args...)
	for range 5 {
		p.ping(t, 2000)
	}
	waitKeys(t, srv, 2, r)
	sent := map[string]time.Time{}
	for _, key := range srv.Keys("node-1") {
		fi, err := os.Stat(srv.Path(key))
		if err != nil {
			t.Fatal(err)
		}
		sent[key] = fi.ModTime()
	}
	srv.Kill()
	for range 4 {
		p.ping(t, 2000)
	}
	// Files 3 and 4 finished, unsent, and 5 begun.
	if !waitFor(30*time.Second, func() bool { return len(rotatedFiles(t, dir)) == 5 }) {
		t.Fatalf("%d files, want 5", len(rotatedFiles(t, dir)))
	}
	if code := r.stop(t, syscall.SIGKILL); code != -1 {
		t.Fatalf("ringcap exited with %d after SIGKILL", code)
	}
	left := len(rotatedFiles(t, dir)) - len(sent)
	srv.Start()

	r = p.start(t, args...)
	if !waitFor(30*time.Second, func() bool { return strings.Contains(r.errors(), "files an earlier run wrote to") }) {
		t.Fatalf("no line says the earlier run's files go first:\n%s", r.errors())
	}
	waitKeys(t, srv, len(sent)+left, r)
	p.ping(t, 2000)
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
	checkStoreHolds(t, srv, rotatedFiles(t, dir))
	for key, at := range sent {
		if fi, err := os.Stat(srv.Path(key)); err != nil || !fi.ModTime().Equal(at) {
			t.Errorf("%s was sent again", key)
		}
	}
}

// Wrong credentials: a line per failed try, the capture goes on, and at
// exit every file is still here and named as not sent.
func TestUploadWrongCredentials(t *testing.T) {
	p := newVethPair(t)
	srv := p.newStore(t)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	dir := t.TempDir()
	r := p.start(t, append([]string{"-w", filepath.Join(dir, "rot.pcapng"), "-q", "--rotate-packets", "2", "--upload-timeout", "1s"}, uploadArgs...)...)
	for range 4 {
		p.ping(t, 2000)
	}
	if !waitFor(30*time.Second, func() bool { return strings.Count(r.errors(), "SignatureDoesNotMatch") >= 2 }) {
		t.Fatalf("no lines give the store's refusal:\n%s", r.errors())
	}
	p.ping(t, 2000) // the capture goes on
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
	files := rotatedFiles(t, dir)
	if n := pcapngtest.CountFiles(t, files, false); n != 5 {
		t.Errorf("the files hold %d frames, want 5", n)
	}
	if !strings.Contains(r.errors(), "files not sent within --upload-timeout 1s, kept for the next run") {
		t.Errorf("no line says what was not sent:\n%s", r.errors())
	}
	for _, line := range strings.Split(r.errors(), "\n") {
		if strings.Contains(line, "SignatureDoesNotMatch") && !strings.HasPrefix(line, "ringcap: upload rot_") {
			t.Errorf("a failure is not one line of its own: %q", line)
		}
	}
	if keys := srv.Keys(""); len(keys) != 0 {
		t.Errorf("the store holds %q", keys)
	}
}

// -W never deletes a file the store does not hold yet; once it does, the
// oldest go as -W says. A real Prometheus server scraping all along sees
// the files waiting, the failures, and the files sent. --upload-delete
// removes each file once sent.
func TestUploadMaxFilesAndDelete(t *testing.T) {
	bpftest.RequireTool(t, "curl")
	p := newVethPair(t)
	srv := p.newStore(t)
	srv.Kill()
	dir := t.TempDir()
	r := p.start(t, append([]string{"-w", filepath.Join(dir, "rot.pcapng"), "-q", "--rotate-packets", "1", "-W", "2",
		"--metrics", "127.0.0.1:9464"}, uploadArgs...)...)
	p.startPrometheus(t, t.TempDir(), "127.0.0.1:9464")
	promWait := func(expr string, ok func(float64) bool) {
		t.Helper()
		var got float64
		if !waitFor(30*time.Second, func() bool { v, has := p.promQuery(t, expr); got = v; return has && ok(v) }) {
			t.Errorf("Prometheus has %s = %v", expr, got)
		}
	}
	for range 6 {
		p.ping(t, 2000)
	}
	// 5 finished, the oldest tried again and again, none deleted.
	if !waitFor(30*time.Second, func() bool { return len(rotatedFiles(t, dir)) == 6 }) {
		t.Fatalf("%d files, want 6", len(rotatedFiles(t, dir)))
	}
	tries := strings.Count(r.errors(), "trying again")
	if !waitFor(30*time.Second, func() bool { return strings.Count(r.errors(), "trying again") >= tries+3 }) {
		t.Fatalf("the uploads are not tried again:\n%s", r.errors())
	}
	if n := len(rotatedFiles(t, dir)); n != 6 {
		t.Errorf("%d files while the store is away, want every one of the 6 kept", n)
	}
	promWait("ringcap_upload_waiting_files", func(v float64) bool { return v == 5 })
	promWait("ringcap_upload_failures_total", func(v float64) bool { return v >= 3 })
	promWait("ringcap_upload_files_total", func(v float64) bool { return v == 0 })
	srv.Start()
	waitKeys(t, srv, 5, r)
	promWait("ringcap_upload_files_total", func(v float64) bool { return v == 5 })
	promWait("ringcap_upload_waiting_files", func(v float64) bool { return v == 0 })
	promWait("ringcap_upload_bytes_total", func(v float64) bool { return v > 5*100 })
	if !waitFor(30*time.Second, func() bool { return len(rotatedFiles(t, dir)) == 2 }) {
		t.Errorf("-W 2: %d files once the store holds them", len(rotatedFiles(t, dir)))
	}
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}

	dir = t.TempDir()
	r = p.start(t, append([]string{"-w", filepath.Join(dir, "rot.pcapng"), "-q", "--rotate-packets", "1", "--upload-delete"}, uploadArgs...)...)
	for range 3 {
		p.ping(t, 2000)
	}
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
	if files := rotatedFiles(t, dir); len(files) != 0 {
		t.Errorf("--upload-delete left %q", files)
	}
}

// The store away until the disk fills, with -W: the capture stops as on
// any full disk (exit 1), no file is deleted to make room, and those not
// sent are named; the next run, with the store back, sends them.
func TestUploadDiskFullStoreAway(t *testing.T) {
	p := newVethPair(t)
	srv := p.newStore(t)
	srv.Kill()
	dir := pcapngtest.Mount(t, "ext4", 2<<20)
	args := append([]string{"-w", filepath.Join(dir, "rot.pcapng"), "-q", "-s", "1500", "--rotate-size", "200KiB", "-W", "2",
		"--upload-timeout", "1s"}, uploadArgs...)
	r := p.start(t, args...)
	for range 4 {
		p.flood(t, 500, 1600)
	}
	if code := r.wait(t); code != exitRuntime {
		t.Fatalf("exit code %d with a full disk, want %d:\n%s", code, exitRuntime, r.errors())
	}
	if !strings.Contains(r.errors(), "no space left on device") {
		t.Errorf("stderr does not name the cause:\n%s", r.errors())
	}
	files := rotatedFiles(t, dir)
	if len(files) < 3 {
		t.Fatalf("%d files: -W 2 deleted files the store does not hold", len(files))
	}
	if n := pcapngtest.CountFiles(t, files, false); n != parseSummary(t, r.errors()).frames {
		t.Errorf("the files hold %d frames, ringcap says it wrote %d", n, parseSummary(t, r.errors()).frames)
	}
	if !strings.Contains(r.errors(), "not sent within --upload-timeout 1s, kept for the next run") {
		t.Errorf("no line names the files not sent:\n%s", r.errors())
	}

	// The next run, the store back: whether the full disk lets it open
	// a file (-W 2 deletes the earlier run's once they are sent) or not
	// (it sends them, then exits 1), the store gets every one.
	local := map[string][]byte{}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		local[filepath.Base(path)] = data
	}
	srv.Start()
	res := runCommand(t, "ip", append([]string{"netns", "exec", p.Rx, binary, "record", "-Q", "in", "-i", rxIf, "--duration", "3s"},
		slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == "1s" || a == "--upload-timeout" })...)...)
	if res.code != 0 && res.code != exitRuntime {
		t.Fatalf("the next run exited with %d:\n%s", res.code, res.stderr)
	}
	for name, data := range local {
		if stored, err := srv.Object("node-1/" + name); err != nil || !bytes.Equal(stored, data) {
			t.Errorf("the store does not hold %s byte for byte (%v):\n%s", name, err, res.stderr)
		}
	}
}
