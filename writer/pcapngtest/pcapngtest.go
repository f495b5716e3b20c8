// Package pcapngtest reads files in tests with Wireshark's own engine,
// through tshark and capinfos.
package pcapngtest

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireTool skips t when the command is not installed, or fails it when
// RINGCAP_REQUIRE_PRIV=1 (CI, where .ci/run installs it).
func RequireTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err == nil {
		return
	}
	if os.Getenv("RINGCAP_REQUIRE_PRIV") == "1" {
		t.Fatalf("%s is not installed (.ci/run installs it)", name)
	}
	t.Skipf("%s is not installed", name)
}

// rootWarning is what Wireshark's tools print whenever they run as root;
// it says nothing about the file.
const rootWarning = `Running as user "root" and group "root". This could be dangerous.`

// Run runs a Wireshark command line tool and returns its standard output.
// Anything it prints on standard error, such as a warning about a damaged
// file, fails t.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	RequireTool(t, name)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var warnings []string
	for _, line := range strings.Split(stderr.String(), "\n") {
		if line = strings.TrimSpace(line); line != "" && line != rootWarning {
			warnings = append(warnings, line)
		}
	}
	if err != nil || len(warnings) > 0 {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, strings.Join(warnings, "\n"))
	}
	return stdout.String()
}

// Fields reads path with tshark and returns, per packet, the values of the
// given fields.
func Fields(t testing.TB, path string, fields ...string) [][]string {
	t.Helper()
	args := []string{"-r", path, "-T", "fields", "-E", "separator=,"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSpace(Run(t, "tshark", args...)), "\n") {
		if line != "" {
			rows = append(rows, strings.Split(line, ","))
		}
	}
	return rows
}
