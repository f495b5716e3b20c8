package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ringcap/ringcap/bpf"
)

// metricsScrape is one scrape of ringcap's metrics: the value of each
// series, by name and labels, e.g. ringcap_ring_size_bytes{ring="0"}.
type metricsScrape map[string]float64

// scrapeMetrics reads ringcap's metrics at addr in the receiving
// namespace, with Prometheus' own parser.
func (p *vethPair) scrapeMetrics(t *testing.T, addr string) metricsScrape {
	t.Helper()
	text := p.inRx(t, "curl", "-sf", "http://"+addr+"/metrics")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("metrics: %v\n%s", err, text)
	}
	s := metricsScrape{}
	for name, family := range families {
		for _, m := range family.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+strconv.Quote(l.GetValue()))
			}
			slices.Sort(labels)
			// A series is a counter or a gauge: the other is nil, and 0.
			s[name+"{"+strings.Join(labels, ",")+"}"] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return s
}

// value is a series' value; one that is missing fails t.
func (s metricsScrape) value(t *testing.T, series string) uint64 {
	t.Helper()
	v, ok := s[series]
	if !ok {
		t.Fatalf("no series %s in the metrics", series)
	}
	return uint64(v)
}

// ring is ring i's counters, from the ringcap_ring_frames_* series.
func (s metricsScrape) ring(t *testing.T, i int) bpf.Counters {
	t.Helper()
	ring := fmt.Sprintf(`ring="%d"`, i)
	return bpf.Counters{
		Selected:      s.value(t, "ringcap_ring_frames_selected_total{"+ring+"}"),
		Written:       s.value(t, "ringcap_ring_frames_written_total{"+ring+"}"),
		RingFull:      s.value(t, `ringcap_ring_frames_dropped_total{reason="ring_full",`+ring+"}"),
		ReserveFailed: s.value(t, `ringcap_ring_frames_dropped_total{reason="reserve_failed",`+ring+"}"),
	}
}

// inbound is the receiving end's inbound counters, from the
// ringcap_frames_* series.
func (s metricsScrape) inbound(t *testing.T) bpf.Counters {
	t.Helper()
	hook := `direction="in",interface="` + rxIf + `"`
	return bpf.Counters{
		Selected:      s.value(t, "ringcap_frames_selected_total{"+hook+"}"),
		Written:       s.value(t, "ringcap_frames_written_total{"+hook+"}"),
		RingFull:      s.value(t, `ringcap_frames_dropped_total{`+hook+`,reason="ring_full"}`),
		ReserveFailed: s.value(t, `ringcap_frames_dropped_total{`+hook+`,reason="reserve_failed"}`),
	}
}

// checkAccounted checks that every selected frame of every ring is
// written or counted lost, and that the rings add up to the interface's
// counters; it returns the rings' counters.
func checkAccounted(t *testing.T, s metricsScrape, rings int) []bpf.Counters {
	t.Helper()
	var byRing []bpf.Counters
	var sum bpf.Counters
	for i := range rings {
		c := s.ring(t, i)
		if c.Selected != c.Written+c.RingFull+c.ReserveFailed {
			t.Errorf("ring %d: %d selected, but %d written, %d lost to a full ring, %d reserve failures", i,
				c.Selected, c.Written, c.RingFull, c.ReserveFailed)
		}
		byRing = append(byRing, c)
		sum = sum.Add(c)
	}
	if _, ok := s[fmt.Sprintf(`ringcap_ring_frames_selected_total{ring="%d"}`, rings)]; ok {
		t.Errorf("metrics for a ring %d; want %d rings", rings, rings)
	}
	if in := s.inbound(t); in != sum {
		t.Errorf("the rings' counters add up to %+v, the interface's are %+v", sum, in)
	}
	return byRing
}
