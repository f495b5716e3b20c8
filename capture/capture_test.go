package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringcap/ringcap/bpf"
)

func TestClockWithinOneMillisecond(t *testing.T) {
	var c clock
	if err := c.sync(); err != nil {
		t.Fatal(err)
	}
	if c.bound <= 0 || c.bound > int64(time.Millisecond) {
		t.Fatalf("error bound %v, want (0, 1ms]", time.Duration(c.bound))
	}
	for range 100 {
		before := time.Now()
		var m unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &m); err != nil {
			t.Fatal(err)
		}
		after := time.Now()
		got := c.wall(uint64(m.Nano()))
		if got.Before(before.Add(-time.Millisecond)) || got.After(after.Add(time.Millisecond)) {
			t.Fatalf("monotonic %d converts to %v, outside [%v, %v] ± 1ms", m.Nano(), got, before, after)
		}
	}
}

func TestDecodeEvent(t *testing.T) {
	record := func(capLen uint32, carried int) []byte {
		b := make([]byte, bpf.EventHeaderSize+carried)
		binary.NativeEndian.PutUint64(b[bpf.EventTsOffset:], 123456789)
		binary.NativeEndian.PutUint32(b[bpf.EventSlotOffset:], 7)
		binary.NativeEndian.PutUint32(b[bpf.EventRxQueueOffset:], 3)
		binary.NativeEndian.PutUint32(b[bpf.EventFrameLenOffset:], 9014)
		binary.NativeEndian.PutUint32(b[bpf.EventCapLenOffset:], capLen)
		binary.NativeEndian.PutUint64(b[bpf.EventDropsOffset:], 1<<33+5)
		binary.NativeEndian.PutUint32(b[bpf.EventCPUOffset:], 1)
		for i := range carried {
			b[bpf.EventHeaderSize+i] = byte(i)
		}
		return b
	}
	tests := []struct {
		name    string
		raw     []byte
		wantErr bool
		capLen  int
	}{
		{"full snaplen", record(256, 256), false, 256},
		{"short frame in a longer record", record(60, 256), false, 60},
		{"header only", record(0, 0), false, 0},
		{"cap_len beyond the record", record(300, 256), true, 0},
		{"shorter than the header", make([]byte, bpf.EventHeaderSize-1), true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := decodeEvent(tt.raw)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if ev.tsNs != 123456789 || ev.slot != 7 || ev.rxQueue != 3 || ev.frameLen != 9014 || len(ev.data) != tt.capLen ||
				ev.drops != 1<<33+5 || ev.cpu != 1 {
				t.Errorf("decoded %+v", ev)
			}
			for i, b := range ev.data {
				if b != byte(i) {
					t.Fatalf("data[%d] = %d, want %d", i, b, byte(i))
				}
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range []Mode{ModeAuto, ModeNative, ModeGeneric} {
		got, err := ParseMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseMode("skb"); err == nil {
		t.Error("ParseMode accepted skb")
	}
}

func TestBothBuilds(t *testing.T) {
	refused := func(reason string) error {
		return fmt.Errorf("attach eth0 in native mode: %w", errors.New(reason))
	}
	tests := []struct {
		name          string
		multi, linear error
		want          string
	}{
		{"single-buffer build not tried", refused("no"), nil, "attach eth0 in native mode: no"},
		{"the same refusal", refused("no"), refused("no"), "attach eth0 in native mode: no"},
		{"two refusals", refused("no frags"), refused("MTU too large"),
			"attach eth0 in native mode: no frags (the single-buffer build was refused first: MTU too large)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := bothBuilds(tt.multi, tt.linear)
			if err.Error() != tt.want {
				t.Errorf("error %q, want %q", err, tt.want)
			}
			if !errors.Is(err, errors.Unwrap(tt.multi)) {
				t.Error("the multi-buffer build's error is not wrapped")
			}
		})
	}
}
