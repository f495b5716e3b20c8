package pcapngtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ringcap/ringcap/bpf/bpftest"
)

// Mount mounts a new file system of the given type ("ext4" or "tmpfs")
// and size in bytes for t, and returns its directory; it is unmounted
// when t ends, failed or not. ext4 is a disk to fill that takes O_DIRECT;
// tmpfs is one that does not.
func Mount(t testing.TB, fsType string, size int64) string {
	t.Helper()
	bpftest.RequirePrivileges(t)
	dir := filepath.Join(t.TempDir(), fsType)
	var cmds [][]string
	switch fsType {
	case "tmpfs":
		cmds = [][]string{{"mkdir", dir}, {"mount", "-t", "tmpfs", "-o", "size=" + strconv.FormatInt(size, 10), "ringcap-test", dir}}
	case "ext4":
		bpftest.RequireTool(t, "mkfs.ext4")
		img := dir + ".img"
		cmds = [][]string{
			{"truncate", "-s", strconv.FormatInt(size, 10), img},
			// No journal, no reserved blocks: the space is the size.
			{"mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-m", "0", img},
			{"mkdir", dir},
			{"mount", "-o", "loop", img, dir},
		}
	default:
		t.Fatalf("mount: no file system %q", fsType)
	}
	for i, cmd := range cmds {
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", cmd, err, out)
		}
		if i == len(cmds)-1 {
			t.Cleanup(func() {
				if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
					t.Errorf("umount %s: %v\n%s", dir, err, out)
				}
			})
		}
	}
	return dir
}

// DirNames names what dir holds, but ringcap's number files
// (.NAME.ringcap-seq), which a rotating capture keeps beside its files.
func DirNames(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".ringcap-seq") {
			names = append(names, e.Name())
		}
	}
	return names
}
