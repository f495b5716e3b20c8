package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The binaries link no test code: the frames ringbench sends come from
// bpf/frames, not from the tests' helpers.
func TestNoTestPackages(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/ringcap/ringcap/cmd/ringbench", "github.com/ringcap/ringcap/cmd/ringcap").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, pkg := range []string{"testing", "github.com/ringcap/ringcap/bpf/bpftest", "github.com/ringcap/ringcap/writer/pcapngtest"} {
		if slices.Contains(deps, pkg) {
			t.Errorf("the binaries import %s", pkg)
		}
	}
}
