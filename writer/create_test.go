package writer

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf/bpftest"
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
