package writer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/capture/packet"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// Earlier finds the files named as a rotating capture names them, oldest
// first by the time in their names, then by number; nothing else.
func TestEarlier(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{
		"cap_00001_20261126100005.pcapng", // a later run
		"cap_00010_20261126100001.pcapng",
		"cap_00002_20261126100001.pcapng",
		"cap_100000_20261126100001.pcapng",
		"cap.pcapng", "other_00001_20261126100001.pcapng", "cap_1_20261126100001.pcapng",
		"cap_00003_2026.pcapng", "cap_00003_20261126100001.pcap", "cap_0000x_20261126100001.pcapng",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "cap_00004_20261126100001.pcapng"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		policy Policy
		want   []string
	}{
		{Policy{}, nil},
		{Policy{Packets: 10}, []string{"cap_00002_20261126100001.pcapng", "cap_00010_20261126100001.pcapng",
			"cap_100000_20261126100001.pcapng", "cap_00001_20261126100005.pcapng"}},
	} {
		got, err := Config{Path: filepath.Join(dir, "cap.pcapng"), Policy: tc.policy}.Earlier()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range got {
			names = append(names, filepath.Base(p))
		}
		if !slices.Equal(names, tc.want) {
			t.Errorf("%+v: Earlier = %q, want %q", tc.policy, names, tc.want)
		}
	}
	if got, err := (Config{Path: filepath.Join(dir, "nosuch", "cap.pcapng"), Policy: Policy{Packets: 1}}).Earlier(); err != nil || got != nil {
		t.Errorf("in a directory that does not exist: %v, %v", got, err)
	}
}

// A rotating capture numbers its files on from an earlier run's: one
// started again within the second takes no name, and names sort in time.
func TestNumbersGoOn(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cap_00007_20261126100005.pcapng"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := Create(Config{Path: filepath.Join(dir, "cap.pcapng"), Options: Options{Interfaces: testInterfaces[:1]},
		Policy: Policy{Packets: 1}, Now: func() time.Time { return start }})
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	if got, want := filepath.Base(files.Current()), "cap_00008_20261126100007.pcapng"; got != want {
		t.Errorf("first file %s, want %s", got, want)
	}
}

// Earlier adopts only regular files of ringcap's user with no other
// name: never a link named as a capture, another user's file, or a hard
// link to a file of root's (which would be uploaded and deleted).
func TestEarlierOnlyRingcaps(t *testing.T) {
	bpftest.RequirePrivileges(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	targetState := rootFile(t, target)
	name := func(seq int) string { return filepath.Join(dir, fmt.Sprintf("cap_%05d_20261126090000.pcapng", seq)) }
	if err := os.WriteFile(name(1), []byte("ringcap's"), 0o600); err != nil {
		t.Fatal(err)
	}
	plant(t, "link", name(2), target)
	plant(t, "file", name(3), "")
	if err := os.Link(target, name(4)); err != nil {
		t.Fatal(err)
	}
	got, err := Config{Path: filepath.Join(dir, "cap.pcapng"), Policy: Policy{Packets: 1}}.Earlier()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{name(1)}; !slices.Equal(got, want) {
		t.Errorf("Earlier = %q, want %q", got, want)
	}
	planted := map[string]bpftest.PathState{name(2): bpftest.StateOf(t, name(2)), name(3): bpftest.StateOf(t, name(3))}
	// -W 1 deletes the adopted file, and nothing else.
	files, err := Create(Config{Path: filepath.Join(dir, "cap.pcapng"), Options: Options{Interfaces: testInterfaces[:1]},
		Policy: Policy{Packets: 1}, MaxFiles: 1, Now: func() time.Time { return start }})
	if err != nil {
		t.Fatal(err)
	}
	if err := files.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(name(1)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the earlier run's file is still there: %v", err)
	}
	for path, st := range planted {
		bpftest.Untouched(t, path, st)
	}
	bpftest.Untouched(t, name(4), targetState)
	bpftest.Untouched(t, target, targetState)
}

// A name rotation would use that is taken (links and files an
// unprivileged user planted at the names it predicts, a fifo) is passed
// over for the next number, once each, said in one line, and the
// capture goes on; nothing planted is written, followed or deleted, -W
// included, and the next run adopts only this one's files.
func TestRotationSkipsTakenNames(t *testing.T) {
	bpftest.RequirePrivileges(t)
	h := &harness{t: t}
	h.dir = t.TempDir()
	target := filepath.Join(h.dir, "target")
	targetState := rootFile(t, target)
	name := func(seq, sec int) string {
		return filepath.Join(h.dir, fmt.Sprintf("cap_%05d_202611261000%02d.pcapng", seq, sec))
	}
	planted := []struct {
		kind, path string
	}{
		{"link", name(2, 8)}, {"file", name(3, 8)}, {"fifo", name(4, 8)},
		{"link", name(3, 9)}, // predicted wrong: never in the way
		{"link", name(6, 9)},
	}
	for _, p := range planted {
		plant(t, p.kind, p.path, target)
	}
	states := make(map[string]bpftest.PathState)
	for _, p := range planted {
		states[p.path] = bpftest.StateOf(t, p.path)
	}
	var notes []string
	h.clock, h.counters = &fakeClock{start}, &fakeCounters{}
	var err error
	h.files, err = Create(Config{Path: filepath.Join(h.dir, "cap.pcapng"), Options: Options{Interfaces: testInterfaces[:1]},
		Policy: Policy{Packets: 1}, MaxFiles: 3, Now: h.clock.Now, Counters: h.counters.read,
		Note: func(line string) { notes = append(notes, line) }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		h.write(time.Duration(i) * time.Second)
	}
	h.close()

	var want []string
	for _, p := range []struct{ path, what string }{
		{name(2, 8), "a symbolic link"}, {name(3, 8), "a file"}, {name(4, 8), "a named pipe"}, {name(6, 9), "a symbolic link"},
	} {
		want = append(want, p.path+" is taken ("+p.what+" ringcap did not create for this run): skipped, the capture goes on under the next number")
	}
	if !slices.Equal(notes, want) {
		t.Errorf("notes:\n%s\nwant:\n%s", strings.Join(notes, "\n"), strings.Join(want, "\n"))
	}
	// Files 1, 5, 7 and 8 are this run's; -W 3 deleted the first.
	names := pcapngtest.DirNames(t, h.dir)
	wantNames := []string{"cap_00002_20261126100008.pcapng", "cap_00003_20261126100008.pcapng", "cap_00003_20261126100009.pcapng",
		"cap_00004_20261126100008.pcapng", "cap_00005_20261126100008.pcapng", "cap_00006_20261126100009.pcapng",
		"cap_00007_20261126100009.pcapng", "cap_00008_20261126100010.pcapng", "target"}
	if !slices.Equal(names, wantNames) {
		t.Fatalf("directory holds %q, want %q", names, wantNames)
	}
	for _, n := range []string{"cap_00005_20261126100008.pcapng", "cap_00007_20261126100009.pcapng", "cap_00008_20261126100010.pcapng"} {
		if got, _ := pcapngtest.Count(t, filepath.Join(h.dir, n), false); got != 1 {
			t.Errorf("%s holds %d packets, want 1", n, got)
		}
	}
	for path, st := range states {
		bpftest.Untouched(t, path, st)
	}
	bpftest.Untouched(t, target, targetState)
	if b, err := os.ReadFile(filepath.Join(h.dir, ".cap.ringcap-seq")); err != nil || string(b) != "8\n" {
		t.Errorf("number file holds %q, %v; want 8", b, err)
	}

	// The next run adopts this one's files only, and goes on at 9.
	var adopted []string
	files, err := Create(Config{Path: filepath.Join(h.dir, "cap.pcapng"), Options: Options{Interfaces: testInterfaces[:1]},
		Policy: Policy{Packets: 1}, MaxFiles: 10, Now: h.clock.Now,
		Adopt: func(path string) Release { adopted = append(adopted, filepath.Base(path)); return Release{} }})
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	if want := []string{"cap_00005_20261126100008.pcapng", "cap_00007_20261126100009.pcapng", "cap_00008_20261126100010.pcapng"}; !slices.Equal(adopted, want) {
		t.Errorf("the next run adopted %q, want %q", adopted, want)
	}
	if got := filepath.Base(files.Current()); !strings.HasPrefix(got, "cap_00009_") {
		t.Errorf("the next run's first file is %s, want number 9", got)
	}
}

// A rotation that finds nothing but taken names stops with one line
// instead of trying for ever.
func TestRotationTooManyTaken(t *testing.T) {
	bpftest.RequirePrivileges(t)
	dir := t.TempDir()
	for seq := 1; seq <= maxTaken+1; seq++ {
		plant(t, "link", filepath.Join(dir, fmt.Sprintf("cap_%05d_20261126100007.pcapng", seq)), "/nonexistent")
	}
	notes := 0
	_, err := Create(Config{Path: filepath.Join(dir, "cap.pcapng"), Options: Options{Interfaces: testInterfaces[:1]},
		Policy: Policy{Packets: 1}, Now: func() time.Time { return start }, Note: func(string) { notes++ }})
	want := fmt.Sprintf("create output file: %d names in a row are taken, up to %s",
		maxTaken+1, filepath.Join(dir, fmt.Sprintf("cap_%05d_20261126100007.pcapng", maxTaken+1)))
	if err == nil || err.Error() != want {
		t.Errorf("Create: %v\nwant %s", err, want)
	}
	if notes != maxTaken {
		t.Errorf("%d notes, want %d", notes, maxTaken)
	}
}

// The number file: ringcap's own is created with the files' mode and
// keeps the last number; one that is not ringcap's (a link, another
// user's file, a hard link, a fifo) is neither followed, written nor
// opened for writing, and said once. The directory's attributes are read
// (an earlier version's number), never written.
func TestSeqFile(t *testing.T) {
	bpftest.RequirePrivileges(t)
	const notOurs = ": the last number is not kept this run, and the next goes on from the files it finds"
	tests := []struct {
		name     string
		before   func(t *testing.T, path, target string) // nil: none
		legacy   string                                  // the directory's attribute
		first    int                                     // the first file's number
		kept     bool                                    // the number file is ringcap's
		wantNote string                                  // after the number file's path
	}{
		{name: "none", first: 1, kept: true},
		{name: "an earlier run's", before: func(t *testing.T, path, _ string) {
			if err := os.WriteFile(path, []byte("41\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, first: 42, kept: true},
		{name: "link", before: func(t *testing.T, path, target string) { plant(t, "link", path, target) },
			first: 1, wantNote: " is a symbolic link, not ringcap's" + notOurs},
		{name: "another user's", before: func(t *testing.T, path, _ string) {
			plant(t, "file", path, "")
			if err := os.WriteFile(path, []byte("99\n"), 0o666); err != nil {
				t.Fatal(err)
			}
		}, first: 1, wantNote: " belongs to user 65534, not ringcap's" + notOurs},
		{name: "hard link", before: func(t *testing.T, path, target string) {
			if err := os.Link(target, path); err != nil {
				t.Fatal(err)
			}
		}, first: 1, wantNote: " has other names (hard links), not ringcap's" + notOurs},
		{name: "fifo", before: func(t *testing.T, path, _ string) { plant(t, "fifo", path, "") },
			first: 1, wantNote: " is a named pipe, not ringcap's" + notOurs},
		{name: "an earlier version's", legacy: "30", first: 31, kept: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			target := filepath.Join(dir, "target")
			rootFile(t, target)
			seqPath := filepath.Join(dir, ".cap.ringcap-seq")
			if tt.before != nil {
				tt.before(t, seqPath, target)
			}
			if tt.legacy != "" {
				if err := unix.Setxattr(dir, "user.ringcap.seq.cap", []byte(tt.legacy), 0); err != nil {
					t.Skipf("the file system takes no user xattrs: %v", err)
				}
			}
			var before bpftest.PathState
			if tt.before != nil {
				before = bpftest.StateOf(t, seqPath)
			}
			targetState := bpftest.StateOf(t, target)
			attrsBefore := xattrs(t, dir)
			var notes []string
			cfg := Config{Path: filepath.Join(dir, "cap.pcapng"), Options: Options{Interfaces: testInterfaces[:1]},
				Policy: Policy{Packets: 1}, Now: func() time.Time { return start }, FileMode: 0o640,
				Note: func(line string) { notes = append(notes, line) }}
			files, err := Create(cfg)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if err := files.WritePacket(packet.Packet{Time: start, Length: 100, Data: pcapngtest.Pattern(100, 0)}); err != nil {
					t.Fatal(err)
				}
			}
			if err := files.Close(); err != nil {
				t.Fatal(err)
			}
			if got, want := filepath.Base(files.Current()), fmt.Sprintf("cap_%05d_20261126100007.pcapng", tt.first+1); got != want {
				t.Errorf("last file %s, want %s", got, want)
			}
			var wantNotes []string
			if tt.wantNote != "" {
				wantNotes = []string{seqPath + tt.wantNote}
			}
			if !slices.Equal(notes, wantNotes) {
				t.Errorf("notes %q, want %q", notes, wantNotes)
			}
			if tt.kept {
				// Created with the files' mode, or as it was.
				umask := unix.Umask(0)
				unix.Umask(umask)
				wantMode := 0o640 &^ fs.FileMode(umask)
				if tt.before != nil {
					wantMode = before.Mode
				}
				st := bpftest.StateOf(t, seqPath)
				if want := fmt.Sprintf("%d\n", tt.first+1); st.Data != want || st.Mode != wantMode {
					t.Errorf("number file holds %q, mode %v; want %q, mode %v", st.Data, st.Mode, want, wantMode)
				}
			} else {
				bpftest.Untouched(t, seqPath, before)
			}
			bpftest.Untouched(t, target, targetState)
			if got := xattrs(t, dir); !slices.Equal(got, attrsBefore) {
				t.Errorf("the directory's attributes are %q, were %q", got, attrsBefore)
			}
		})
	}
}

// xattrs lists path's extended attributes, each as name=value.
func xattrs(t *testing.T, path string) []string {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(path, buf)
	if err != nil {
		t.Fatal(err)
	}
	var attrs []string
	for name := range strings.SplitSeq(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		val := make([]byte, 256)
		m, err := unix.Lgetxattr(path, name, val)
		if err != nil {
			t.Fatal(err)
		}
		attrs = append(attrs, name+"="+string(val[:m]))
	}
	return attrs
}
