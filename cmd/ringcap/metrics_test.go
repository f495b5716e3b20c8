package main

import (
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringcap/ringcap/bpf"
	"github.com/ringcap/ringcap/bpf/bpftest"
)

// inRx runs a command in the receiving namespace and returns its output.
func (p *vethPair) inRx(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", p.Rx, name}, args...)...).Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}

// promQuery asks the Prometheus server at 127.0.0.1:9090 in the receiving
// namespace for the value of expr; false when it has none yet.
func (p *vethPair) promQuery(t *testing.T, expr string) (float64, bool) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", p.Rx, "curl", "-sf",
		"http://127.0.0.1:9090/api/v1/query?query="+url.QueryEscape(expr)).Output()
	if err != nil {
		return 0, false // not up yet
	}
	var resp struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("Prometheus answered %q: %v", out, err)
	}
	if len(resp.Data.Result) != 1 {
		return 0, false
	}
	s, _ := resp.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil
}

// startPrometheus runs a Prometheus server in the receiving namespace,
// answering queries at 127.0.0.1:9090 and scraping target (job ringcap)
// every second, until t ends.
func (p *vethPair) startPrometheus(t *testing.T, dir, target string) {
	t.Helper()
	bpftest.RequireTool(t, "prometheus")
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: ringcap
    static_configs:
      - targets: ['`+target+`']
`), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := exec.Command("ip", "netns", "exec", p.Rx, "prometheus", "--config.file="+config,
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"), "--web.listen-address=127.0.0.1:9090")
	prom.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prom.Process.Kill(); prom.Wait() })
}

// A real Prometheus server scrapes ringcap --metrics during a capture on
// the veth pair, and its query API gives the counters ringcap's summary
// gives at exit.
func TestMetricsPrometheus(t *testing.T) {
	bpftest.RequireTool(t, "prometheus")
	bpftest.RequireTool(t, "promtool")
	bpftest.RequireTool(t, "curl")
	p := newVethPair(t)
	dir := t.TempDir()
	// A --post-rotate command that fails, to be counted.
	r := p.start(t, "-w", filepath.Join(dir, "rot.pcapng"), "-q", "--rotate-packets", "2", "--metrics", "127.0.0.1:9464",
		"--post-rotate", "exit 3 #")

	p.startPrometheus(t, dir, "127.0.0.1:9464")

	// The exposition is clean by promtool's rules.
	check := exec.Command("promtool", "check", "metrics")
	check.Stdin = strings.NewReader(p.inRx(t, "curl", "-sf", "http://127.0.0.1:9464/metrics"))
	if out, err := check.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	const pings = 5 // oversize: 5 frames selected, in 3 files
	for range pings {
		p.ping(t, 2000)
	}
	// The default rings: one per CPU, each of the default snap length's.
	rings, err := bpf.DefaultRings()
	if err != nil {
		t.Fatal(err)
	}
	each, err := bpf.SplitRingSize(bpf.DefaultRingsSize(rings), rings, 256)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		`ringcap_frames_selected_total{interface="rc-rx"}`:                                          pings,
		`ringcap_frames_written_total{interface="rc-rx"}`:                                           pings,
		`ringcap_frames_dropped_total{interface="rc-rx",reason="ring_full"}`:                        0,
		`ringcap_file_packets_total`:                                                                pings,
		`ringcap_files_finished_total`:                                                              2,
		`count(ringcap_ring_size_bytes)`:                                                            float64(rings),
		`min(ringcap_ring_size_bytes)`:                                                              float64(each),
		`max(ringcap_ring_size_bytes)`:                                                              float64(each),
		`sum(ringcap_ring_frames_written_total)`:                                                    pings,
		`ringcap_post_rotate_failures_total`:                                                        2,
		`ringcap_build_info{interface="rc-rx",program="tcx ingress",version="` + testVersion + `"}`: 1,
	}
	for expr, v := range want {
		var got float64
		if !waitFor(30*time.Second, func() bool { g, ok := p.promQuery(t, expr); got = g; return ok && g == v }) {
			t.Errorf("Prometheus has %s = %v, want %v", expr, got, v)
		}
	}
	seen, ok := p.promQuery(t, `ringcap_frames_seen_total{interface="rc-rx"}`)
	if !ok {
		t.Error("Prometheus has no ringcap_frames_seen_total")
	}

	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
	sum := parseSummary(t, r.errors())
	if sum.selected != pings || sum.written != pings || uint64(sum.frames) != pings || sum.seen < uint64(seen) {
		t.Errorf("summary %+v disagrees with what Prometheus scraped (%d selected, written and in files, %v seen)", sum, pings, seen)
	}
	if n := len(rotatedFiles(t, dir)); n != 3 {
		t.Errorf("%d files, want 3", n)
	}
}

// --metrics with port 0 serves at a port the kernel chooses, and one line
// says where.
func TestMetricsAnyPort(t *testing.T) {
	bpftest.RequireTool(t, "curl")
	p := newVethPair(t)
	r := p.start(t, "-w", filepath.Join(t.TempDir(), "m.pcapng"), "-q", "--metrics", "127.0.0.1:0")
	m := regexp.MustCompile(`(?m)^ringcap: metrics at (http://127\.0\.0\.1:([0-9]+)/metrics)$`).FindStringSubmatch(r.errors())
	if m == nil || m[2] == "0" {
		t.Fatalf("no line says where the metrics are:\n%s", r.errors())
	}
	if out := p.inRx(t, "curl", "-sf", m[1]); !strings.Contains(out, "ringcap_frames_seen_total") {
		t.Errorf("%s serves no ringcap metrics:\n%s", m[1], out)
	}
	if code := r.stop(t, os.Interrupt); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
}
