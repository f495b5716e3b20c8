// Command ringbench measures ringcap against tcpdump, dumpcap and xdpdump
// on the same traffic: it builds a pair of network namespaces, sends
// oversize frames into one at rising rates with an in-kernel generator,
// and runs each tool there in turn. It prints a markdown table and plots
// loss against offered rate.
//
//	go run ./cmd/ringbench            # the full run, a few minutes
//	go run ./cmd/ringbench --smoke    # seconds: checks that it all runs
package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ringcap/ringcap/bpf/frames"
	"github.com/ringcap/ringcap/capture/cpustat"
	"github.com/ringcap/ringcap/cmd/internal/veth"
)

type scenario struct {
	name   string
	frames int
	rate   int // frames a second; 0: as fast as the generator goes
	mtu    int // the pair's MTU; 0: 9000
}

// idleRepeats is how often each tool runs on the nothing-selected traffic,
// in turn with the others; the median receive rate is reported, since one
// run of it is noisy.
const idleRepeats = 3

// The interfaces of the network's one link: the generator sends from
// txIf, the tools listen on rxIf (veth.Config.Prefix names them).
const (
	ifPrefix = "rb"
	txIf     = ifPrefix + "-tx"
	rxIf     = ifPrefix + "-rx"
)

func main() {
	app := &cli.App{
		Name:  "ringbench",
		Usage: "measure ringcap, tcpdump, dumpcap and xdpdump on the same traffic",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "smoke", Usage: "a few seconds: check that every part runs"},
			&cli.StringFlag{Name: "ringcap", Usage: "ringcap binary (default: build it)"},
			&cli.StringFlag{Name: "plot", Value: "ringbench.png", Usage: "where to write the plot"},
			&cli.BoolFlag{Name: "install", Usage: "apt-get install the tools that are missing"},
			&cli.StringSliceFlag{Name: "tool", Usage: "measure only this tool (repeat for more); none is always measured"},
			&cli.IntFlag{Name: "threads", Value: runtime.NumCPU(), Usage: "generator threads, spread over the CPUs"},
			&cli.StringSliceFlag{Name: "traffic", Usage: "run only this traffic, by its name in the table (repeat for more)"},
			&cli.BoolFlag{Name: "hooks", Usage: "measure instead what a frame nobody selects costs at each hook, on veth, VXLAN and loopback"},
			&cli.BoolFlag{Name: "rings-ab", Usage: "measure instead ringcap's default rings against --rings 1, the same memory, in turn, files on a tmpfs (traffic: sustained 10M unless --traffic)"},
			&cli.IntFlag{Name: "rounds", Value: compressRounds, Usage: "with --compress, how many times each side runs, in turn with the others"},
			&cli.BoolFlag{Name: "compress", Usage: "measure instead --compress: each kind on 64 MiB files of a TCP transfer and of the protocol corpus, and the sustained run with and without it, in turn (traffic: sustained 10M unless --traffic)"},
		},
		Action: run,
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "ringbench:", err)
		os.Exit(1)
	}
}

func run(c *cli.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: it builds network namespaces and loads XDP programs")
	}
	dir, err := os.MkdirTemp("", "ringbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if c.Bool("install") {
		install()
	}
	ringcap, err := ringcapBinary(c.String("ringcap"), dir)
	if err != nil {
		return err
	}
	if c.Bool("hooks") {
		return measureHooks(ringcap, dir, c.Bool("smoke"))
	}
	files := dir
	unmount := func() {}
	if c.Bool("rings-ab") {
		fs, err := mountTmpfs(filepath.Join(dir, "tmpfs"))
		if err != nil {
			return err
		}
		defer fs.unmount()
		files, unmount = fs.dir, fs.unmount
	}
	// A queue per CPU, as on a multi-queue NIC, at MTU 9000.
	p, err := veth.New(veth.Config{Name: fmt.Sprintf("ringbench-%d", os.Getpid()), Prefix: ifPrefix, MTU: 9000, Queues: runtime.NumCPU()})
	if err != nil {
		return err
	}
	defer p.Close()
	defer cleanUpOnSignal(p, unmount, dir)()
	threads := c.Int("threads")
	if c.Bool("smoke") {
		// One sender, so that no frame is dropped before it reaches
		// the interface: the smoke run checks that ringcap gets all.
		threads = 1
	}
	gen, err := newGenerator(p, threads)
	if err != nil {
		return err
	}
	traffic := chooseTraffic(c)
	oversize := frames.Spec{L3Len: 1986}.Build() // 2000 bytes
	if c.Bool("rings-ab") {
		return ringsAB(c, p, gen, ringcap, files, traffic.loaded, oversize)
	}
	if c.Bool("compress") {
		return compressBench(c, p, gen, ringcap, dir, traffic, oversize)
	}
	return compareTools(c, p, gen, ringcap, dir, traffic, oversize)
}

// ringcapBinary is the ringcap to measure: the one --ringcap gives, or
// one built from this repository into dir.
func ringcapBinary(given, dir string) (string, error) {
	if given != "" {
		return given, nil
	}
	path := filepath.Join(dir, "ringcap")
	if out, err := exec.Command("go", "build", "-o", path, "github.com/ringcap/ringcap/cmd/ringcap").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build ringcap (run ringbench from the repository, or give --ringcap): %v: %s", err, out)
	}
	return path, nil
}

// cleanUpOnSignal makes an interrupted ringbench still remove its
// namespaces, its tmpfs and dir before it exits; the tool running in a
// namespace gets SIGTERM as ringbench exits (see tool.start). stop stops
// listening for the signals.
func cleanUpOnSignal(p *veth.Network, unmount func(), dir string) (stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		p.Close()
		unmount()
		os.RemoveAll(dir)
		os.Exit(1)
	}()
	return func() { signal.Stop(sig) }
}

// trafficPlan is the traffic a run sends: oversize frames at rising
// rates (loaded), and small frames that nobody selects (idle), each of
// those repeated.
type trafficPlan struct {
	loaded, idle []scenario
	repeats      int // runs of each idle scenario by each tool
}

// chooseTraffic is the full run's traffic, or the smoke run's, less what
// --traffic leaves out.
func chooseTraffic(c *cli.Context) trafficPlan {
	plan := trafficPlan{
		loaded: []scenario{
			{"250k/s", 500_000, 250_000, 0},
			{"500k/s", 1_000_000, 500_000, 0},
			{"1M/s", 1_000_000, 1_000_000, 0},
			{"2M/s", 2_000_000, 2_000_000, 0},
			{"burst 1M", 1_000_000, 0, 0},
			{"sustained 10M", 10_000_000, 0, 0},
		},
		// At MTU 9000 ringcap needs its multi-buffer build; at 1500
		// veth takes the single-buffer one.
		idle: []scenario{
			{"60 B, nothing selected, MTU 9000", 5_000_000, 0, 9000},
			{"60 B, nothing selected, MTU 1500", 5_000_000, 0, 1500},
		},
		repeats: idleRepeats,
	}
	if c.Bool("smoke") {
		plan.loaded = []scenario{{"smoke", 20_000, 0, 0}}
		for i := range plan.idle {
			plan.idle[i].frames = 20_000
		}
		plan.repeats = 1
	}
	if want := c.StringSlice("traffic"); len(want) > 0 {
		unwanted := func(sc scenario) bool { return !slices.Contains(want, sc.name) }
		plan.loaded = slices.DeleteFunc(plan.loaded, unwanted)
		plan.idle = slices.DeleteFunc(plan.idle, unwanted)
	}
	return plan
}

// compareTools measures each tool on each traffic, prints the tables and
// plots the loss. A smoke run is CI's check that the measurement works:
// at its low rate, ringcap must get every frame sent.
func compareTools(c *cli.Context, p *veth.Network, gen *generator, ringcap, dir string, traffic trafficPlan, oversize []byte) error {
	toolList, stopStores, err := chooseTools(c, p, ringcap, dir)
	if err != nil {
		return err
	}
	defer stopStores()
	var rows []row
	for _, sc := range traffic.loaded {
		for _, t := range toolList {
			r := measure(p, gen, t, sc, oversize, dir)
			fmt.Fprintln(os.Stderr, r.String())
			rows = append(rows, r)
		}
	}
	idleRows, err := measureIdle(p, gen, toolList, traffic, dir)
	if err != nil {
		return err
	}
	wholeRows, err := measureWholeBursts(c, p, ringcap, dir)
	if err != nil {
		return err
	}
	printTables(os.Stdout, rows, idleRows)
	printWhole(os.Stdout, wholeRows)
	if err := plotLoss(c.String("plot"), rows); err != nil {
		return err
	}
	if c.Bool("smoke") {
		// (The interface also counts the odd IPv6 neighbour discovery
		// frame, which nobody selects.)
		for _, r := range rows {
			if r.tool == "ringcap" && (r.err != nil || r.written < uint64(r.scenario.frames)) {
				return fmt.Errorf("smoke run: ringcap wrote %d of %d frames: %v", r.written, r.scenario.frames, r.err)
			}
		}
	}
	return nil
}

// chooseTools lists the tools --tool names, and none, which is always
// measured; it starts a store for each that uploads, which stop stops.
func chooseTools(c *cli.Context, p *veth.Network, ringcap, dir string) (toolList []tool, stop func(), err error) {
	toolList = tools(ringcap)
	if want := c.StringSlice("tool"); len(want) > 0 {
		toolList = slices.DeleteFunc(toolList, func(t tool) bool { return t.name != "none" && !slices.Contains(want, t.name) })
	}
	var stores []*store
	stop = func() {
		for i := len(stores) - 1; i >= 0; i-- {
			stores[i].stop()
		}
	}
	for i, t := range toolList {
		if !t.store {
			continue
		}
		st, err := startStore(p, dir)
		if err != nil {
			stop()
			return nil, nil, err
		}
		stores = append(stores, st)
		toolList[i].st, toolList[i].env = st, st.env
	}
	return toolList, stop, nil
}

// measureIdle measures the tools on traffic that nobody selects: each
// tool's runs in turn with the others', and the median of them kept.
func measureIdle(p *veth.Network, gen *generator, toolList []tool, traffic trafficPlan, dir string) ([]row, error) {
	small := frames.Spec{L3Len: 46}.Build() // 60 bytes
	var idleRows []row
	for _, sc := range traffic.idle {
		if err := p.SetMTU(sc.mtu); err != nil {
			return nil, err
		}
		// The files' fate does not matter when nothing is selected.
		idleTools := slices.DeleteFunc(slices.Clone(toolList), func(t tool) bool {
			return t.name == "ringcap-rotate" || t.name == "ringcap-upload"
		})
		runs := make([][]row, len(idleTools))
		for range traffic.repeats {
			for i, t := range idleTools {
				if strings.HasPrefix(t.name, "ringcap") {
					t.args = withArgs(t.args, "--mtu", "9000")
				}
				r := measure(p, gen, t, sc, small, dir)
				fmt.Fprintln(os.Stderr, r.String())
				runs[i] = append(runs[i], r)
			}
		}
		for _, rs := range runs {
			idleRows = append(idleRows, medianRate(rs))
		}
	}
	return idleRows, nil
}

// measureWholeBursts measures bursts of whole frames, unless --traffic
// leaves them out.
func measureWholeBursts(c *cli.Context, p *veth.Network, ringcap, dir string) ([]row, error) {
	if want := c.StringSlice("traffic"); len(want) > 0 && !slices.Contains(want, wholeBurstName) {
		return nil, nil
	}
	n, runs := 20_000, 3
	if c.Bool("smoke") {
		n, runs = 2_000, 1
	}
	if err := p.SetMTU(9000); err != nil {
		return nil, err
	}
	return measureWhole(p, ringcap, dir, n, runs)
}

// medianRate returns the run with the median receive rate, or a failed
// run if any failed.
func medianRate(runs []row) row {
	for _, r := range runs {
		if r.err != nil {
			return r
		}
	}
	slices.SortFunc(runs, func(a, b row) int { return cmp.Compare(a.rxRate, b.rxRate) })
	return runs[len(runs)/2]
}

func withArgs(f func(string) []string, extra ...string) func(string) []string {
	return func(out string) []string { return append(f(out), extra...) }
}

// row is one tool on one scenario.
type row struct {
	scenario scenario
	tool     string
	err      error
	// received is what the receiving interface counted: what the
	// generator sent, which rounds each test run up to whole batches.
	received uint64
	offered  float64 // frames a second the generator achieved
	rxRate   float64 // frames a second the receiving interface counted
	written  uint64
	output   string        // what the tool printed
	cpu      time.Duration // the tool's process
	// machine is the CPU time every CPU spent busy from the start of the
	// traffic until the tool exited: the generator's, the tool's and
	// the kernel's work for it, wherever it ran.
	machine time.Duration
}

func (r row) lost() uint64 { return r.received - min(r.written, r.received) }

func (r row) lossPercent() float64 {
	if r.received == 0 {
		return 0
	}
	return 100 * float64(r.lost()) / float64(r.received)
}

func (r row) String() string {
	if r.err != nil {
		return fmt.Sprintf("%s, %s: %v", r.scenario.name, r.tool, r.err)
	}
	return fmt.Sprintf("%s, %s: offered %.0f/s, received %d at %.0f/s, written %d, cpu %v", r.scenario.name, r.tool, r.offered, r.received, r.rxRate, r.written, r.cpu)
}

// measure runs tool t on the receiving end while gen sends sc's traffic
// of frame.
func measure(p *veth.Network, gen *generator, t tool, sc scenario, frame []byte, dir string) row {
	return measureSend(p, t, sc, dir, func() (time.Duration, error) {
		return gen.send(p, frame, sc.frames, sc.rate)
	})
}

// measureSend runs tool t on the receiving end while send sends sc's
// traffic, and reads what reached the interface and what t wrote.
func measureSend(p *veth.Network, t tool, sc scenario, dir string, send func() (time.Duration, error)) row {
	r := row{scenario: sc, tool: t.name}
	if t.args != nil {
		if _, err := exec.LookPath(t.args("")[0]); err != nil {
			r.err = fmt.Errorf("not installed (ringbench --install)")
			return r
		}
	}
	if t.needsPass {
		l, err := passOnRx(p)
		if err != nil {
			r.err = fmt.Errorf("attach XDP_PASS to %s: %w", rxIf, err)
			return r
		}
		defer l.Close()
	}
	var proc *running
	if t.args != nil {
		var err error
		if proc, err = t.start(p, dir); err != nil {
			r.err = err
			return r
		}
	}
	rx0, err := p.RxPackets(0)
	var busy0 time.Duration
	if err == nil {
		busy0, err = cpustat.Machine()
	}
	if err == nil {
		var took time.Duration
		if took, err = send(); err == nil {
			rx1, _ := p.RxPackets(0)
			r.received = rx1 - rx0
			r.offered = float64(sc.frames) / took.Seconds()
			r.rxRate = float64(r.received) / took.Seconds()
		}
	}
	if err != nil {
		r.err = err
		if proc != nil {
			proc.stop()
		}
		return r
	}
	if proc != nil {
		// Give the tool a moment to write what it has taken in.
		time.Sleep(time.Second)
		r.cpu, err = proc.stop()
		r.output = proc.text()
	}
	if err == nil {
		var busy1 time.Duration
		busy1, err = cpustat.Machine()
		r.machine = busy1 - busy0
	}
	if err == nil && proc != nil {
		r.written, err = proc.written()
	}
	if err == nil && t.st != nil {
		var paths []string
		if paths, err = proc.files(); err == nil {
			if err = t.st.holds(paths); err != nil {
				err = fmt.Errorf("%w (%v): %s", err, proc.cmd.ProcessState, strings.TrimSpace(proc.text()))
			}
		}
	}
	r.err = err
	return r
}

func install() {
	var missing []string
	for cmd, pkg := range map[string]string{"tcpdump": "tcpdump", "dumpcap": "wireshark-common", "xdpdump": "xdp-tools", "capinfos": "wireshark-common", "zstd": "zstd"} {
		if _, err := exec.LookPath(cmd); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return
	}
	cmd := exec.Command("apt-get", append([]string{"install", "-y", "-q"}, missing...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "ringbench: apt-get install:", err)
	}
}
