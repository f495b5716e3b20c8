package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ringcap/ringcap/bpf"
	"github.com/ringcap/ringcap/capture"
	"github.com/ringcap/ringcap/writer"
)

// metrics serves a running capture's counters in Prometheus' text format
// at /metrics. Its collector reads them when Prometheus scrapes, from the
// program's maps and the files' counters: nothing copies them meanwhile.
type metrics struct {
	capt  *capture.Capture
	files *writer.Files
	post  *postRotate
	up    *uploads // nil without --upload

	seen, selected, written, dropped *prometheus.Desc
	ringSize, ringUsed               *prometheus.Desc

	// By ring, the frames of the CPUs that write into it, whichever
	// ring took them: what shows a hot queue losing frames while the
	// others lose none.
	ringSelected, ringWritten, ringDropped *prometheus.Desc

	filePackets, fileBytes, finished *prometheus.Desc
	postFailures, buildInfo          *prometheus.Desc
	uploadFiles, uploadBytes         *prometheus.Desc
	uploadFailures, uploadWaiting    *prometheus.Desc
}

// checkMetricsAddr checks --metrics' HOST:PORT as it is written, before
// anything is opened: a host name is looked up when ringcap listens.
func checkMetricsAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--metrics %q: give HOST:PORT or :PORT, e.g. 127.0.0.1:9464", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("--metrics %s: port %q: give a number from 1 to 65535, or 0 for any free port", addr, port)
	}
	return nil
}

// listenMetrics opens the metrics address before anything is attached, so
// that one that cannot be used stops ringcap first.
func listenMetrics(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		// A name that gives no address is a mistake on the command
		// line, whatever the resolver's reason.
		return nil, usageError{fmt.Errorf("--metrics %s: no address found for %q (%s): give an address of this host, e.g. 127.0.0.1:9464 or :9464",
			addr, dnsErr.Name, dnsErr.Err)}
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("--metrics %s: the port is taken: choose another", addr)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return nil, fmt.Errorf("--metrics %s: no interface here has that address", addr)
	case err != nil:
		return nil, fmt.Errorf("--metrics %s: %v", addr, err)
	}
	return l, nil
}

// metricsEndpoint is where --metrics serves. Its address is taken before
// anything is attached, so that one that cannot be used stops ringcap
// first; it serves from when the files are open until ringcap is done.
type metricsEndpoint struct {
	addr        string // as --metrics gave it
	listener    net.Listener
	stopServing context.CancelFunc // nil until serve
}

func openMetricsEndpoint(addr string) (*metricsEndpoint, error) {
	l, err := listenMetrics(addr)
	if err != nil {
		return nil, err
	}
	return &metricsEndpoint{addr: addr, listener: l}, nil
}

// serve serves m, and says where when the kernel chose the port.
func (e *metricsEndpoint) serve(m *metrics, stderr io.Writer) {
	var serving context.Context
	serving, e.stopServing = context.WithCancel(context.Background())
	m.serve(serving, e.listener)
	announceMetrics(stderr, e.addr, e.listener)
}

func (e *metricsEndpoint) close() {
	if e.stopServing != nil {
		e.stopServing()
	}
	e.listener.Close()
}

// announceMetrics says where the metrics are served when --metrics left
// the port to the kernel (port 0): nothing else would tell.
func announceMetrics(stderr io.Writer, addr string, l net.Listener) {
	_, port, _ := net.SplitHostPort(addr)
	if n, err := strconv.ParseUint(port, 10, 16); err == nil && n == 0 {
		fmt.Fprintf(stderr, "ringcap: metrics at http://%s/metrics\n", l.Addr())
	}
}

func newMetrics(capt *capture.Capture, files *writer.Files, post *postRotate, up *uploads) *metrics {
	iface := []string{"interface", "direction"}
	return &metrics{
		capt: capt, files: files, post: post, up: up,
		seen:         prometheus.NewDesc("ringcap_frames_seen_total", "Frames the XDP program ran on.", iface, nil),
		selected:     prometheus.NewDesc("ringcap_frames_selected_total", "Frames that matched the selection.", iface, nil),
		written:      prometheus.NewDesc("ringcap_frames_written_total", "Selected frames written into the ring.", iface, nil),
		dropped:      prometheus.NewDesc("ringcap_frames_dropped_total", "Selected frames lost before the ring, by reason: ring_full (no room), reserve_failed.", []string{"interface", "direction", "reason"}, nil),
		ringSize:     prometheus.NewDesc("ringcap_ring_size_bytes", "Size of each ring buffer.", []string{"ring"}, nil),
		ringUsed:     prometheus.NewDesc("ringcap_ring_used_bytes", "Bytes of each ring holding records not read yet, or read and not yet given back (a sixteenth of the ring, and 1 MiB, at most).", []string{"ring"}, nil),
		ringSelected: prometheus.NewDesc("ringcap_ring_frames_selected_total", "Selected frames of the CPUs whose ring this is.", []string{"ring"}, nil),
		ringWritten:  prometheus.NewDesc("ringcap_ring_frames_written_total", "Those written into a ring: this one, or another while this one was full.", []string{"ring"}, nil),
		ringDropped:  prometheus.NewDesc("ringcap_ring_frames_dropped_total", "Those lost, by reason: ring_full (no ring had room), reserve_failed.", []string{"ring", "reason"}, nil),
		filePackets:  prometheus.NewDesc("ringcap_file_packets_total", "Frames written to files.", nil, nil),
		fileBytes:    prometheus.NewDesc("ringcap_file_bytes_total", "Bytes written to files.", nil, nil),
		finished:     prometheus.NewDesc("ringcap_files_finished_total", "Files complete on disk: flushed, written to the disk and closed.", nil, nil),
		postFailures: prometheus.NewDesc("ringcap_post_rotate_failures_total", "--post-rotate commands that failed.", nil, nil),
		buildInfo: prometheus.NewDesc("ringcap_build_info", "ringcap's version, the Go version, and how the program is attached to each interface, each direction.",
			[]string{"version", "goversion", "interface", "direction", "program"}, nil),
		uploadFiles:    prometheus.NewDesc("ringcap_upload_files_total", "Files uploaded, and checked in the store.", nil, nil),
		uploadBytes:    prometheus.NewDesc("ringcap_upload_bytes_total", "Bytes of those files.", nil, nil),
		uploadFailures: prometheus.NewDesc("ringcap_upload_failures_total", "Upload tries that failed.", nil, nil),
		uploadWaiting:  prometheus.NewDesc("ringcap_upload_waiting_files", "Finished files the store does not hold yet.", nil, nil),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.seen, m.selected, m.written, m.dropped, m.ringSize, m.ringUsed,
		m.ringSelected, m.ringWritten, m.ringDropped,
		m.filePackets, m.fileBytes, m.finished, m.postFailures, m.buildInfo,
		m.uploadFiles, m.uploadBytes, m.uploadFailures, m.uploadWaiting} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	hooks := m.capt.Hooks()
	counts, err := m.capt.Counters()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(m.seen, err)
		return
	}
	// A hook added between the two reads has no series yet. A gone
	// interface's hooks stay, so an interface made again under the same
	// name (a pod's veth) has two hooks per direction: one series adds
	// them up, and stays monotonic; two would fail the whole scrape.
	type key struct{ name, dir string }
	var order []key
	sums := map[key]bpf.Counters{}
	programs := map[[3]string]bool{}
	for i, c := range counts[:min(len(counts), len(hooks))] {
		k := key{hooks[i].Interface, directionLabel(hooks[i].Direction)}
		if _, ok := sums[k]; !ok {
			order = append(order, k)
		}
		sums[k] = sums[k].Add(c)
		if p := [3]string{k.name, k.dir, hooks[i].Attachment()}; !programs[p] {
			programs[p] = true
			ch <- prometheus.MustNewConstMetric(m.buildInfo, prometheus.GaugeValue, 1, version, runtime.Version(), p[0], p[1], p[2])
		}
	}
	for _, k := range order {
		c := sums[k]
		ch <- prometheus.MustNewConstMetric(m.seen, prometheus.CounterValue, float64(c.Seen), k.name, k.dir)
		ch <- prometheus.MustNewConstMetric(m.selected, prometheus.CounterValue, float64(c.Selected), k.name, k.dir)
		ch <- prometheus.MustNewConstMetric(m.written, prometheus.CounterValue, float64(c.Written), k.name, k.dir)
		ch <- prometheus.MustNewConstMetric(m.dropped, prometheus.CounterValue, float64(c.RingFull), k.name, k.dir, "ring_full")
		ch <- prometheus.MustNewConstMetric(m.dropped, prometheus.CounterValue, float64(c.ReserveFailed), k.name, k.dir, "reserve_failed")
	}
	for i := range m.capt.Rings() {
		ring := strconv.Itoa(i)
		ch <- prometheus.MustNewConstMetric(m.ringSize, prometheus.GaugeValue, float64(m.capt.RingSize()), ring)
		ch <- prometheus.MustNewConstMetric(m.ringUsed, prometheus.GaugeValue, float64(m.capt.RingUsed(i)), ring)
	}
	byRing, err := m.capt.RingCounters()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(m.ringSelected, err)
	}
	for i, c := range byRing {
		ring := strconv.Itoa(i)
		ch <- prometheus.MustNewConstMetric(m.ringSelected, prometheus.CounterValue, float64(c.Selected), ring)
		ch <- prometheus.MustNewConstMetric(m.ringWritten, prometheus.CounterValue, float64(c.Written), ring)
		ch <- prometheus.MustNewConstMetric(m.ringDropped, prometheus.CounterValue, float64(c.RingFull), ring, "ring_full")
		ch <- prometheus.MustNewConstMetric(m.ringDropped, prometheus.CounterValue, float64(c.ReserveFailed), ring, "reserve_failed")
	}
	ch <- prometheus.MustNewConstMetric(m.filePackets, prometheus.CounterValue, float64(m.files.Saved()))
	ch <- prometheus.MustNewConstMetric(m.fileBytes, prometheus.CounterValue, float64(m.files.Bytes()))
	ch <- prometheus.MustNewConstMetric(m.finished, prometheus.CounterValue, float64(m.files.Finished()))
	ch <- prometheus.MustNewConstMetric(m.postFailures, prometheus.CounterValue, float64(m.post.failures.Load()))
	if m.up != nil {
		st := m.up.uploader.Stats()
		ch <- prometheus.MustNewConstMetric(m.uploadFiles, prometheus.CounterValue, float64(st.Files))
		ch <- prometheus.MustNewConstMetric(m.uploadBytes, prometheus.CounterValue, float64(st.Bytes))
		ch <- prometheus.MustNewConstMetric(m.uploadFailures, prometheus.CounterValue, float64(st.Failures))
		ch <- prometheus.MustNewConstMetric(m.uploadWaiting, prometheus.GaugeValue, float64(st.Waiting))
	}
}

// directionLabel is the direction label's value: tcpdump's -Q words.
func directionLabel(d capture.Direction) string {
	if d == capture.Outbound {
		return "out"
	}
	return "in"
}

// serve serves the metrics on l until ctx ends.
func (m *metrics) serve(ctx context.Context, l net.Listener) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	context.AfterFunc(ctx, func() { srv.Close() })
}
