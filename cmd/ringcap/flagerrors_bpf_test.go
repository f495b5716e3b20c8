package main

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/ringcap/ringcap/bpf"
)

// The ring sizes and filter keywords bpf refuses, in the condition's
// words, come out of ringcap naming the option that fixes them, and
// still unwrap to bpf's error.
func TestFlagsInBPFErrors(t *testing.T) {
	least := bpf.FormatSize(max(uint64(os.Getpagesize()), 128<<10)) // a page, a record of snaplen 65535
	twice := bpf.FormatSize(2 * max(uint64(os.Getpagesize()), 128<<10))
	split := func(total uint64, rings int, snaplen uint32) error {
		t.Helper()
		each, err := bpf.SplitRingSize(total, rings, snaplen)
		if err == nil {
			t.Fatalf("%s over %d rings: %d a ring, want a refusal", bpf.FormatSize(total), rings, each)
		}
		return err
	}
	_, keyword := bpf.CompileFilter("ifname eth0")
	if keyword == nil {
		t.Fatal(`"ifname eth0" compiled, want a refusal`)
	}
	tests := []struct {
		err  error
		want string
	}{
		{split(8<<30, 2, 256), "ring size 8GiB over 2 rings is more than 2GiB a ring, the kernel's largest: give --ring-size 4GiB or less, or more --rings"},
		{split(64<<10, 1, 65535), "ring size 64KiB is less than the " + least + " a ring needs (a page, and a record of snaplen 65535): give --ring-size " + least + " or more"},
		{fmt.Errorf("record: %w", split(64<<10, 2, 65535)),
			"record: ring size 64KiB over 2 rings leaves 32KiB a ring, less than the " + least + " a ring needs (a page, and a record of snaplen 65535): give --ring-size " + twice + " or more, or fewer --rings"},
		{keyword, `filter expression "ifname eth0": "ifname" cannot be used here: it names an interface in OpenBSD pf logs; choose interfaces with -i`},
	}
	for _, tt := range tests {
		err := withFlags(tt.err)
		if got := err.Error(); got != tt.want {
			t.Errorf("%q:\n got %q\nwant %q", tt.err, got, tt.want)
		}
		if !errors.Is(err, tt.err) {
			t.Errorf("%q does not unwrap to bpf's error", err)
		}
	}
}
