package writer

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
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

// nobody is the unprivileged user whose links and files the tests plant.
const nobody = 65534

// rootFile makes a file of root's that a planted link leads to.
func rootFile(t *testing.T, path string) bpftest.PathState {
	t.Helper()
	if err := os.WriteFile(path, []byte("root's file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	return bpftest.StateOf(t, path)
}

// plant makes what an unprivileged user could put at path in a shared
// directory: kind is "link" (to target), "file" or "fifo", owned by
// nobody.
func plant(t *testing.T, kind, path, target string) {
	t.Helper()
	var err error
	switch kind {
	case "link":
		err = os.Symlink(target, path)
	case "file":
		if err = os.WriteFile(path, []byte("nobody's file\n"), 0o666); err == nil {
			err = os.Chmod(path, 0o666)
		}
	case "fifo":
		err = unix.Mkfifo(path, 0o666)
	default:
		t.Fatalf("plant: no kind %q", kind)
	}
	if err == nil {
		err = os.Lchown(path, nobody, nobody)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// Something at the output path that is not a regular file is refused,
// with Overwrite or without, in one line that says what is there (the
// command adds the fix: cmd/ringcap's TestOutputFlags); Check refuses it
// before anything starts, and creating the file refuses it too (it may
// appear after the check). Nothing is followed, written, removed or
// chmodded.
func TestNotRegularRefused(t *testing.T) {
	bpftest.RequirePrivileges(t) // mknod, and files of nobody's
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	targetState := rootFile(t, target)
	tests := []struct {
		name string
		make func(path string) error
		want string // after "PATH is "
	}{
		{"symbolic link", func(p string) error { return os.Symlink(target, p) },
			"a symbolic link, not a regular file"},
		{"dangling symbolic link", func(p string) error { return os.Symlink(filepath.Join(dir, "nosuch"), p) },
			"a symbolic link, not a regular file"},
		{"device", func(p string) error { return unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 7))) },
			"a device, not a regular file"},
		{"named pipe", func(p string) error { return unix.Mkfifo(p, 0o666) },
			"a named pipe, not a regular file"},
		{"socket", func(p string) error {
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
			if err != nil {
				return err
			}
			l.SetUnlinkOnClose(false)
			return l.Close()
		}, "a socket, not a regular file"},
		{"directory", func(p string) error { return os.Mkdir(p, 0o755) },
			"a directory, not a regular file"},
	}
	for _, tt := range tests {
		for _, force := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/force=%v", tt.name, force), func(t *testing.T) {
				path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+fmt.Sprint(force))
				if err := tt.make(path); err != nil {
					t.Fatal(err)
				}
				before := bpftest.StateOf(t, path)
				want := path + " is " + tt.want
				cfg := Config{Path: path, Options: Options{Interfaces: testInterfaces[:1]}, Overwrite: force}
				if err := cfg.Check(); err == nil || err.Error() != want {
					t.Errorf("Check: %v\nwant %s", err, want)
				}
				if files, err := Create(cfg); err == nil || err.Error() != want {
					t.Errorf("Create: %v\nwant %s", err, want)
					if err == nil {
						files.Close()
					}
				}
				if f, err := createOne(path, 0o600, force); err == nil || err.Error() != want {
					t.Errorf("creating the file after the check: %v\nwant %s", err, want)
					if err == nil {
						f.Close()
					}
				}
				bpftest.Untouched(t, path, before)
				bpftest.Untouched(t, target, targetState)
				if _, err := os.Lstat(filepath.Join(dir, "nosuch")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("a dangling link's target was created: %v", err)
				}
			})
		}
	}
}

// Overwrite replaces a regular file: unlinks it and creates a new one, so
// that the old file, under another name (a hard link), keeps its bytes,
// owner and mode. Without Overwrite it is refused.
func TestForceReplacesRegularFile(t *testing.T) {
	bpftest.RequirePrivileges(t)
	dir := t.TempDir()
	path, other := filepath.Join(dir, "cap.pcapng"), filepath.Join(dir, "other-name")
	plant(t, "file", path, "")
	if err := os.Link(path, other); err != nil {
		t.Fatal(err)
	}
	old := bpftest.StateOf(t, other)
	cfg := Config{Path: path, Options: Options{Interfaces: testInterfaces[:1]}, FileMode: 0o640}
	want := "output file " + path + " exists"
	if _, err := Create(cfg); err == nil || err.Error() != want {
		t.Errorf("without Overwrite: %v, want %q", err, want)
	}
	bpftest.Untouched(t, path, old)

	cfg.Overwrite = true
	files, err := Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := files.Close(); err != nil {
		t.Fatal(err)
	}
	bpftest.Untouched(t, other, old)
	umask := unix.Umask(0)
	unix.Umask(umask)
	now := bpftest.StateOf(t, path)
	if now.Ino == old.Ino || now.UID != uint32(os.Geteuid()) || now.Mode.Perm() != 0o640&^fs.FileMode(umask) {
		t.Errorf("replaced file: inode %d (was %d), owner %d, mode %v; want a new file of %d's, mode %v",
			now.Ino, old.Ino, now.UID, now.Mode, os.Geteuid(), 0o640&^fs.FileMode(umask))
	}
	if n, _ := pcapngtest.Count(t, path, false); n != 0 {
		t.Errorf("the new file holds %d packets, want an empty capture", n)
	}
}

// An output path in a directory that is missing, or through a file, is
// one line that names the fix, before anything starts.
func TestCheckDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	nodir, file, adir := filepath.Join(dir, "nodir"), filepath.Join(dir, "file"), filepath.Join(dir, "adir")
	tests := []struct {
		path   string
		policy Policy
		want   string
	}{
		{nodir + "/x", Policy{}, nodir + "/x: there is no directory " + nodir + ": create it first (mkdir -p " + nodir + "), or give a file in one that exists"},
		{nodir + "/x", Policy{Packets: 1}, nodir + "/x: there is no directory " + nodir + ": create it first (mkdir -p " + nodir + "), or give a file in one that exists"},
		{file + "/x", Policy{}, file + "/x: " + file + " is not a directory: give a file in a directory"},
		{adir, Policy{}, adir + " is a directory, not a regular file"},
		// Rotated names would go beside it: a file name forgotten.
		{adir, Policy{Size: 1 << 20}, adir + " is a directory, not a regular file"},
	}
	for _, tt := range tests {
		for _, force := range []bool{false, true} {
			cfg := Config{Path: tt.path, Policy: tt.policy, Overwrite: force}
			if err := cfg.Check(); err == nil || err.Error() != tt.want {
				t.Errorf("%s %+v force=%v: %v\nwant %s", tt.path, tt.policy, force, err, tt.want)
			}
		}
	}
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
	names, _ := filepathBases(t, h.dir)
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

// A finished file that -W would delete, but that is no longer ringcap's
// by then (another user put a link or a file of theirs in its place) is
// left alone.
func TestMaxFilesLeavesSwapped(t *testing.T) {
	bpftest.RequirePrivileges(t)
	for _, kind := range []string{"link", "file"} {
		t.Run(kind, func(t *testing.T) {
			first := "cap_00001_20261126100007.pcapng"
			h := &harness{t: t, inUse: map[string]heldFile{first: newHeldFile()}, maxFiles: 1}
			h = newHarnessWith(t, h, Policy{Packets: 1})
			target := filepath.Join(h.dir, "target")
			targetState := rootFile(t, target)
			h.write(0)
			h.write(time.Second) // file 1 is finished, and in use
			path := filepath.Join(h.dir, first)
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			plant(t, kind, path, target)
			before := bpftest.StateOf(t, path)
			h.inUse[first].decide(Deletable)
			h.close()
			bpftest.Untouched(t, path, before)
			bpftest.Untouched(t, target, targetState)
		})
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
					t.Skipf("no user xattrs here: %v", err)
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

// The file written with O_DIRECT is opened again through the descriptor
// of the one ringcap created, not by its name, which may lead elsewhere
// by then.
func TestDirectOpensTheCreatedFile(t *testing.T) {
	dir := pcapngtest.Mount(t, "ext4", 64<<20)
	path := filepath.Join(dir, "x.pcapng")
	f, err := createNew(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	target := filepath.Join(dir, "target")
	targetState := rootFile(t, target)
	if err := os.Rename(path, filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	pool, err := newAlignedBuffers(directBuffers, DirectBufferSize)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.release()
	d, why := openDirect(f, func() (*alignedBuffers, error) { return pool, nil })
	if d == nil {
		t.Fatalf("openDirect: %s", why)
	}
	want := pcapngtest.Pattern(d.align, 0)
	if err := d.close(d.writeFull(append(pool.get(), want...), 1), 1); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "moved")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("the created file holds %d bytes (%v), want the %d written", len(got), err, len(want))
	}
	bpftest.Untouched(t, target, targetState)
}
