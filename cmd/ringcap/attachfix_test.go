package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/ringcap/ringcap/capture"
)

// ringcap prints capture's attach errors with the options that get round
// them, wherever they sit in the error, and the error still unwraps to
// capture's.
func TestWithFlagFixes(t *testing.T) {
	lo := capture.Hook{Interface: "lo", Index: 1}
	refused := &capture.NativeRefusedError{Hook: lo, Why: "its driver offers no native XDP here"}
	asked := &capture.NativeRefusedError{Hook: lo, Err: errors.New("attach lo in native mode: refused (operation not supported)"), XDPAsked: true}
	egress := lo
	egress.Direction = capture.Outbound
	behind := lo
	behind.Behind = "other (id 7)"
	busy := &capture.XDPBusyError{Hook: lo, Mode: capture.ModeNative}
	plain := errors.New("attach lo: no slot left")
	tests := []struct {
		err  error
		want string
	}{
		{refused, "attach lo in native mode: its driver offers no native XDP here: --hook tc captures its received frames at tcx ingress instead"},
		{asked, "attach lo in native mode: refused (operation not supported): --hook tc captures its received frames at tcx ingress instead, --mode generic in generic XDP"},
		{&capture.NoTCXError{Hook: lo}, "attach lo tcx ingress: this kernel has no tcx links, which ringcap's tc hooks need: capture inbound frames at XDP with -Q in --hook xdp, or run Linux 6.6 or later"},
		{&capture.NoTCXError{Hook: egress}, "attach lo tcx egress: this kernel has no tcx links, which ringcap's tc hooks need: sent frames need Linux 6.6 or later; -Q in --hook xdp captures the received ones"},
		{&capture.NoTCXError{Hook: behind}, "attach lo tcx ingress: this kernel has no tcx links, which ringcap's tc hooks need: run Linux 6.6 or later, or capture where no other XDP program runs"},
		{busy, "attach lo in native mode: the interface already has an XDP program; `ip link show lo` names it, and --hook tc captures beside it"},
		{plain, "attach lo: no slot left"},
		{fmt.Errorf("no interface took ringcap's program: %w", errors.Join(busy, plain, busy)),
			"no interface took ringcap's program: attach lo in native mode: the interface already has an XDP program; `ip link show lo` names it, and --hook tc captures beside it\n" +
				"attach lo: no slot left\n" +
				"attach lo in native mode: the interface already has an XDP program; `ip link show lo` names it, and --hook tc captures beside it"},
	}
	for _, tt := range tests {
		err := withFlagFixes(tt.err)
		if got := err.Error(); got != tt.want {
			t.Errorf("%q:\n got %q\nwant %q", tt.err, got, tt.want)
		}
		if !errors.Is(err, tt.err) {
			t.Errorf("%q does not unwrap to capture's error", err)
		}
	}
	if err := withFlagFixes(nil); err != nil {
		t.Errorf("no error became %v", err)
	}
}
