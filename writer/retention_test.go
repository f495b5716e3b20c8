package writer

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringcap/ringcap/bpf/bpftest"
	"github.com/ringcap/ringcap/capture/packet"
	"github.com/ringcap/ringcap/writer/pcapngtest"
)

func TestMaxFilesDeletesOnlyItsOwn(t *testing.T) {
	h := newHarnessWith(t, &harness{t: t, maxFiles: 3}, Policy{Packets: 1})
	// Files that look like ringcap's but are not this capture's.
	foreign := []string{"cap_00000_20261126100000.pcapng", "cap_00001_20200101000000.pcapng", "other.pcapng"}
	for _, n := range foreign {
		if err := os.WriteFile(filepath.Join(h.dir, n), []byte("not ours"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 6 {
		h.write(time.Duration(i) * time.Second)
	}
	h.close()
	names := pcapngtest.DirNames(t, h.dir)
	want := append(slices.Clone(foreign), "cap_00004_20261126100010.pcapng",
		"cap_00005_20261126100011.pcapng", "cap_00006_20261126100012.pcapng")
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("directory holds %q, want %q", names, want)
	}
	if len(h.finished) != 6 {
		t.Errorf("%d files reported finished, want 6", len(h.finished))
	}
}

// A file that --max-files would delete while its --post-rotate command
// or upload still runs is deleted only once it is released, and one whose
// upload did not end is kept. A command that removed the file itself
// (gzip) is no error.
func TestMaxFilesWaitsForRelease(t *testing.T) {
	name := func(seq, sec int) string {
		return fmt.Sprintf("cap_%05d_202611261000%02d.pcapng", seq, sec)
	}
	h := &harness{t: t, inUse: make(map[string]heldFile), maxFiles: 2}
	for seq := 1; seq <= 5; seq++ {
		h.inUse[name(seq, 6+seq)] = newHeldFile()
	}
	h = newHarnessWith(t, h, Policy{Packets: 1})
	for i := range 5 {
		h.write(time.Duration(i) * time.Second)
	}
	// Files 1 to 3 are past the limit, but in use.
	names := pcapngtest.DirNames(t, h.dir)
	if want := []string{name(1, 7), name(2, 8), name(3, 9), name(4, 10), name(5, 11)}; !slices.Equal(names, want) {
		t.Fatalf("while their commands run, the directory holds %q, want %q", names, want)
	}
	// The command on file 1 removes it, as gzip does.
	if err := os.Remove(filepath.Join(h.dir, name(1, 7))); err != nil {
		t.Fatal(err)
	}
	h.inUse[name(1, 7)].decide(Deletable)
	h.inUse[name(2, 8)].decide(Keep) // not sent
	h.inUse[name(3, 9)].decide(Keep) // not sent either, and the first verdict stands
	h.inUse[name(3, 9)].decide(Deletable)
	h.inUse[name(4, 10)].decide(Deletable)
	h.inUse[name(5, 11)].decide(Deletable)
	h.close()
	names = pcapngtest.DirNames(t, h.dir)
	if want := []string{name(2, 8), name(3, 9), name(4, 10), name(5, 11)}; !slices.Equal(names, want) {
		t.Errorf("after the commands ended, the directory holds %q, want %q", names, want)
	}
}

// -W counts the files an earlier run left under the same name and deletes
// them first, each once Adopt's Release lets it go (one it keeps stays),
// and nothing else; numbers go on from the last one the number file keeps.
func TestMaxFilesAdoptsEarlier(t *testing.T) {
	dir := t.TempDir()
	earlier := []string{"cap_00001_20261126090000.pcapng", "cap_00002_20261126090001.pcapng", "cap_00003_20261126090002.pcapng"}
	for _, n := range append(slices.Clone(earlier), "other.pcapng") {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("earlier"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keep, decide := NewRelease()
	decide(Keep) // its upload did not end
	var adopted []string
	clock := &fakeClock{start}
	files, err := Create(Config{Path: filepath.Join(dir, "cap.pcapng"), Options: Options{Interfaces: testInterfaces[:1]},
		Policy: Policy{Packets: 1}, MaxFiles: 2, Now: clock.Now,
		Adopt: func(path string) Release {
			adopted = append(adopted, filepath.Base(path))
			if filepath.Base(path) == earlier[1] {
				return keep
			}
			return Release{}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(adopted, earlier) {
		t.Errorf("adopted %q, want %q", adopted, earlier)
	}
	for i := range 2 {
		clock.now = start.Add(time.Duration(i) * time.Second)
		if err := files.WritePacket(packet.Packet{Time: clock.now, Length: 100, Data: make([]byte, 100)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := files.Close(); err != nil {
		t.Fatal(err)
	}
	names := pcapngtest.DirNames(t, dir)
	want := []string{earlier[1], "cap_00004_20261126100007.pcapng", "cap_00005_20261126100008.pcapng", "other.pcapng"}
	if !slices.Equal(names, want) {
		t.Errorf("directory holds %q, want %q", names, want)
	}

	// With every file gone, as --upload-delete leaves the directory, the
	// next run's numbers still go on.
	for _, n := range names {
		os.Remove(filepath.Join(dir, n))
	}
	files, err = Create(Config{Path: filepath.Join(dir, "cap.pcapng"), Options: Options{Interfaces: testInterfaces[:1]},
		Policy: Policy{Packets: 1}, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	if got := filepath.Base(files.Current()); !strings.HasPrefix(got, "cap_00006_") {
		t.Errorf("after the files are gone, the next is %s, want number 6", got)
	}
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
