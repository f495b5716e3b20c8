package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringcap/ringcap/bpf/bpftest"
)

// imageTestEnv turns TestContainerImage on: it downloads two Debian roots
// and builds the image, minutes that `make test` spends after the other
// tests (make image-test), not beside them.
const imageTestEnv = "RINGCAP_IMAGE_TEST"

// deploy/Containerfile builds the image from the repository, on Debian
// roots made with mmdebstrap and imported (no registry is reachable
// here), and the image runs ringcap version and a replay that gives the
// golden file's blocks.
func TestContainerImage(t *testing.T) {
	if os.Getenv(imageTestEnv) != "1" {
		t.Skipf("set %s=1 (make image-test) to build the image", imageTestEnv)
	}
	bpftest.RequirePrivileges(t)
	for _, tool := range []string{"mmdebstrap", "podman", "buildah"} {
		bpftest.RequireTool(t, tool)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	dir := t.TempDir()
	tag := fmt.Sprintf("localhost/ringcap-test-%d", os.Getpid())
	goroot := strings.TrimSpace(run("go", "env", "GOROOT"))
	roots := []struct{ name, include, hook string }{
		{"base", "libpcap0.8,ca-certificates", ""},
		// Debian's Go is older than go.mod's: the one building these
		// tests goes in.
		{"builder", "gcc,libc6-dev,libpcap-dev,ca-certificates", "--customize-hook=copy-in " + goroot + " /usr/local"},
	}
	for _, r := range roots {
		tar := filepath.Join(dir, r.name+".tar")
		args := []string{"--variant=apt", "--include=" + r.include, `--aptopt=Acquire::Retries "5"`}
		if r.hook != "" {
			args = append(args, r.hook)
		}
		run("mmdebstrap", append(args, "bookworm", tar, "http://deb.debian.org/debian")...)
		run("podman", "import", "-q", tar, tag+"-"+r.name)
		t.Cleanup(func() { exec.Command("podman", "rmi", "-f", tag+"-"+r.name).Run() })
	}
	if filepath.Base(goroot) != "go" {
		t.Fatalf("GOROOT %s is not a directory named go: the builder's PATH names /usr/local/go", goroot)
	}
	modcache := strings.TrimSpace(run("go", "env", "GOMODCACHE"))
	// The build stage's image is kept untagged: each run's goes too.
	// (Not run: its context has ended by the time cleanups run.)
	dangling := func() []string {
		out, _ := exec.Command("podman", "images", "-q", "--no-trunc", "--filter", "dangling=true").Output()
		return strings.Fields(string(out))
	}
	before := dangling()
	t.Cleanup(func() {
		for _, id := range dangling() {
			if !slices.Contains(before, id) {
				exec.Command("podman", "rmi", "-f", id).Run()
			}
		}
	})
	// chroot isolation: crun cannot make containers on a host with
	// hybrid cgroups, where setrlimit is refused; the build needs none.
	run("podman", "build", "--isolation=chroot", "--network=host", "--pull=never",
		"--build-arg", "BUILDER="+tag+"-builder", "--build-arg", "BASE="+tag+"-base", "--build-arg", "VERSION="+testVersion,
		"-v", modcache+":/root/go/pkg/mod", "--ignorefile", "../../deploy/Containerfile.dockerignore",
		"-f", "../../deploy/Containerfile", "-t", tag, "../..")
	t.Cleanup(func() { exec.Command("podman", "rmi", "-f", tag).Run() })

	// The image run as buildah runs it, with the capabilities the
	// DaemonSet adds. containers-common's seccomp profile allows bpf(2)
	// only with CAP_SYS_ADMIN (containerd's allows it with CAP_BPF), so
	// the container runs without one.
	ctr := strings.TrimSpace(run("buildah", "from", "--pull-never", "--security-opt", "seccomp=unconfined", tag))
	t.Cleanup(func() { exec.Command("buildah", "rm", ctr).Run() })
	out := t.TempDir()
	inImage := func(args ...string) string {
		t.Helper()
		return run("buildah", append([]string{"run", "--isolation", "chroot",
			"--cap-add", "CAP_BPF", "--cap-add", "CAP_NET_ADMIN", "--cap-add", "CAP_PERFMON",
			"-v", filepath.Join(mustAbs(t, "../../testdata")) + ":/data:ro", "-v", out + ":/out", ctr, "--"}, args...)...)
	}
	if got := inImage("/usr/bin/ringcap", "version"); !strings.HasPrefix(got, "ringcap "+testVersion+", "+runtime.Version()) {
		t.Errorf("ringcap version in the image: %q", got)
	}
	inImage("/usr/bin/ringcap", "replay", "/data/jumbo.pcapng", "-w", "/out/jumbo.pcapng")
	got, err := os.ReadFile(filepath.Join(out, "jumbo.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../testdata/golden/jumbo.default.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(afterSectionHeader(t, got), afterSectionHeader(t, want)) {
		t.Error("the image's replay of jumbo.pcapng differs from testdata/golden/jumbo.default.pcapng")
	}
}

func mustAbs(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}
