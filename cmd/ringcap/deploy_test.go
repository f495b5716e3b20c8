package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringcap/ringcap/bpf/bpftest"
)

// The systemd unit is one systemd accepts, sandboxed: systemd-analyze
// verifies it and rates its exposure. Its capabilities are the ones
// TestCapabilitiesSuffice runs ringcap with.
func TestSystemdUnit(t *testing.T) {
	bpftest.RequireTool(t, "systemd-analyze")
	unit, err := os.ReadFile("../../deploy/ringcap@.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ExecStart=/usr/local/bin/ringcap record -i %i ",
		"AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON\n",
		"CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON\n",
		"KillSignal=SIGINT\n",
		"Restart=on-failure\n",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	// verify checks that ExecStart's program exists: point it at the
	// ringcap the tests built, as installing it would.
	path := filepath.Join(t.TempDir(), "ringcap@.service")
	local := strings.ReplaceAll(string(unit), "/usr/local/bin/ringcap", binary)
	if err := os.WriteFile(path, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("systemd-analyze", "verify", "--man=no", path).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Exposure, from 0 (locked down) to 100: this unit rates 23, "OK".
	if out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--threshold=30", path).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze security rates the unit's exposure above 3.0: %v\n%s", err, out)
	}
}
