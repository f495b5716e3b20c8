package main

import "testing"

func TestParseRingcap(t *testing.T) {
	tests := []struct {
		name    string
		output  string
		rings   string
		summary summary
		wantErr bool
	}{
		{
			name: "one interface, sharded",
			output: "ringcap: capturing on rb-rx (inbound, XDP native mode, multi-buffer): l3len > 1500, snaplen 256, 2 rings of 4MiB, to out.pcapng (buffered: tmpfs does not take O_DIRECT)\n" +
				"ringcap: 9000 frames written to out.pcapng (2.5 MiB)\n" +
				"ringcap: 10004 seen, 10000 selected, 9000 written to the ring, 990 dropped because the ring was full, 10 reserve failures\n",
			rings:   "2 rings of 4MiB",
			summary: summary{saved: 9000, seen: 10004, selected: 10000, ringWritten: 9000, ringFull: 990, reserveFailed: 10},
		},
		{
			name: "two interfaces: the last line is the total, one ring",
			output: "ringcap: capturing on a, b: l3len > 1500, snaplen 256, 1 ring of 8MiB, to out.pcapng (direct I/O)\n" +
				"ringcap: 3 frames written to out.pcapng (1.6 KiB)\n" +
				"ringcap: a: 2 seen, 1 selected, 1 written to the ring, 0 dropped because the ring was full, 0 reserve failures\n" +
				"ringcap: b: 4 seen, 2 selected, 2 written to the ring, 0 dropped because the ring was full, 0 reserve failures\n" +
				"ringcap: 6 seen, 3 selected, 3 written to the ring, 0 dropped because the ring was full, 0 reserve failures\n",
			rings:   "1 ring of 8MiB",
			summary: summary{saved: 3, seen: 6, selected: 3, ringWritten: 3},
		},
		{
			name:    "no summary: ringcap was killed",
			output:  "ringcap: capturing on rb-rx (inbound, XDP native mode): l3len > 1500, snaplen 256, 2 rings of 4MiB, to out.pcapng (direct I/O)\n",
			wantErr: true,
		},
		{
			name: "no frames-written line",
			output: "ringcap: capturing on rb-rx (inbound, XDP native mode): l3len > 1500, snaplen 256, 2 rings of 4MiB, to out.pcapng (direct I/O)\n" +
				"ringcap: 6 seen, 3 selected, 3 written to the ring, 0 dropped because the ring was full, 0 reserve failures\n",
			wantErr: true,
		},
		{
			name:    "no rings: ringcap refused its command line",
			output:  "ringcap: --rings 3: this host has 2 CPUs, and a ring without one would take no frames of its own: give 1 to 2\n",
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rings, s, err := parseRingcap(tt.output)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parsed %q, %+v; want an error", rings, s)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rings != tt.rings || s != tt.summary {
				t.Errorf("got %q, %+v; want %q, %+v", rings, s, tt.rings, tt.summary)
			}
		})
	}
}
