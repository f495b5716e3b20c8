// Package veth builds the test network that ringcap's end-to-end tests and
// ringbench run on: two network namespaces, a sender's and a receiver's,
// joined by veth pairs, with addresses from 198.18.0.0/15 (RFC 2544's
// benchmarking range). Traffic between them never leaves the two
// namespaces, and Close removes both. Do runs code in one of them; a
// Crowd is one namespace of many links that carry nothing.
package veth

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Config says what to build.
type Config struct {
	// Name names the namespaces Name-tx and Name-rx; it must not be in
	// use.
	Name string
	// Prefix names link i's ends Prefix-tx and Prefix-rx, with i+1
	// appended from the second link on (rc-tx, rc-tx2, ...).
	Prefix string
	Links  int // veth pairs; 0 means 1
	MTU    int // 0 means 1500
	// Queues is the number of transmit and receive queues of each end,
	// as on a multi-queue NIC: veth hands a frame sent on transmit queue
	// n to the peer's receive queue n. 0 means 1.
	Queues int
}

// Link is one veth pair: link i has the sender's 198.18.0.4i+1/30 and the
// receiver's 198.18.0.4i+2/30.
type Link struct {
	Tx, Rx         string // interface names, in Network.Tx and Network.Rx
	TxAddr, RxAddr string
}

// Network is the two namespaces and their links.
type Network struct {
	Tx, Rx string // namespace names: sender, receiver
	Links  []Link
}

// New builds the network. On failure it removes what it built.
func New(cfg Config) (*Network, error) {
	cfg.Links = max(cfg.Links, 1)
	cfg.Queues = max(cfg.Queues, 1)
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.Links > 64 {
		return nil, fmt.Errorf("%d links: at most 64 fit 198.18.0.0/24", cfg.Links)
	}
	n := &Network{Tx: cfg.Name + "-tx", Rx: cfg.Name + "-rx"}
	queues := strconv.Itoa(cfg.Queues)
	mtu := strconv.Itoa(cfg.MTU)
	// Loopback up too: a test may serve or scrape within a namespace.
	cmds := [][]string{{"netns", "add", n.Tx}, {"netns", "add", n.Rx},
		{"-n", n.Tx, "link", "set", "lo", "up"}, {"-n", n.Rx, "link", "set", "lo", "up"}}
	for i := range cfg.Links {
		suffix := ""
		if i > 0 {
			suffix = strconv.Itoa(i + 1)
		}
		l := Link{
			Tx: cfg.Prefix + "-tx" + suffix, Rx: cfg.Prefix + "-rx" + suffix,
			TxAddr: fmt.Sprintf("198.18.0.%d", 4*i+1), RxAddr: fmt.Sprintf("198.18.0.%d", 4*i+2),
		}
		n.Links = append(n.Links, l)
		cmds = append(cmds,
			[]string{"link", "add", l.Tx, "netns", n.Tx, "numtxqueues", queues, "numrxqueues", queues,
				"type", "veth", "peer", "name", l.Rx, "netns", n.Rx, "numtxqueues", queues, "numrxqueues", queues},
			// No IPv6 on the links: its neighbour discovery and MLD
			// would add frames to those a test sends.
			[]string{"netns", "exec", n.Tx, "sysctl", "-qw", "net.ipv6.conf." + l.Tx + ".disable_ipv6=1"},
			[]string{"netns", "exec", n.Rx, "sysctl", "-qw", "net.ipv6.conf." + l.Rx + ".disable_ipv6=1"},
			[]string{"-n", n.Tx, "link", "set", l.Tx, "mtu", mtu, "up"},
			[]string{"-n", n.Rx, "link", "set", l.Rx, "mtu", mtu, "up"},
			[]string{"-n", n.Tx, "addr", "add", l.TxAddr + "/30", "dev", l.Tx},
			[]string{"-n", n.Rx, "addr", "add", l.RxAddr + "/30", "dev", l.Rx},
		)
	}
	for _, args := range cmds {
		if err := ip(args...); err != nil {
			n.Close()
			return nil, err
		}
	}
	return n, nil
}

func ip(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Close removes both namespaces, and with them the links.
func (n *Network) Close() {
	exec.Command("ip", "netns", "del", n.Tx).Run()
	exec.Command("ip", "netns", "del", n.Rx).Run()
}

// Crowd is one network namespace of many veth pairs, both ends of each
// in it and up, without addresses: a host's many interfaces, for a test
// of what follows them all.
type Crowd struct {
	Name string // the namespace
}

// NewCrowd builds namespace name, which must not be in use, with pairs
// veth pairs at mtu, named rc-m<i>-a and rc-m<i>-b, and its loopback up.
// On failure it removes what it built.
func NewCrowd(name string, pairs, mtu int) (*Crowd, error) {
	if err := ip("netns", "add", name); err != nil {
		return nil, err
	}
	c := &Crowd{Name: name}
	// One ip process for all: hundreds of pairs, one command each.
	var batch strings.Builder
	batch.WriteString("link set lo up\n")
	for i := range pairs {
		fmt.Fprintf(&batch, "link add name rc-m%d-a mtu %d type veth peer name rc-m%d-b mtu %d\nlink set rc-m%d-a up\nlink set rc-m%d-b up\n", i, mtu, i, mtu, i, i)
	}
	cmd := exec.Command("ip", "-n", name, "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		c.Close()
		return nil, fmt.Errorf("ip -n %s -batch: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return c, nil
}

// Close removes the namespace, and with it the links.
func (c *Crowd) Close() {
	exec.Command("ip", "netns", "del", c.Name).Run()
}

// SetMTU sets the MTU of both ends of every link.
func (n *Network) SetMTU(mtu int) error {
	for _, l := range n.Links {
		for _, end := range []struct{ ns, ifname string }{{n.Tx, l.Tx}, {n.Rx, l.Rx}} {
			if err := ip("-n", end.ns, "link", "set", end.ifname, "mtu", strconv.Itoa(mtu)); err != nil {
				return err
			}
		}
	}
	return nil
}

// RxPackets reads the packet counter of link i's receiving end.
func (n *Network) RxPackets(i int) (uint64, error) {
	ifname := n.Links[i].Rx
	out, err := exec.Command("ip", "-n", n.Rx, "-s", "-j", "link", "show", ifname).Output()
	if err != nil {
		return 0, fmt.Errorf("ip link show %s: %w", ifname, err)
	}
	var links []struct {
		Stats64 struct {
			Rx struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return 0, fmt.Errorf("ip link show %s: unexpected output %q", ifname, out)
	}
	return links[0].Stats64.Rx.Packets, nil
}

// Do runs f on a thread moved into namespace ns, and moves the thread
// back (its namespace and the CPUs it may run on) before the Go runtime
// may run another goroutine on it. A thread that ended instead would take
// along the processes started from it with Pdeathsig (golang/go#27505):
// ringcap and the servers the tests and ringbench run, killed mid-run.
// Only a thread that cannot be moved back is left to end.
func Do(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open this thread's namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		var cpus unix.CPUSet
		if err := unix.SchedGetaffinity(0, &cpus); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("read this thread's CPUs: %w", err)
			return
		}
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open namespace %s: %w", ns, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		err = f()
		back := unix.Setns(orig, unix.CLONE_NEWNET)
		if back == nil {
			back = unix.SchedSetaffinity(0, &cpus)
		}
		if back != nil {
			// The thread ends, and with it what was started from it.
			err = errors.Join(err, fmt.Errorf("move the thread back from namespace %s: %w", ns, back))
		} else {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// AllowedCPUs lists the CPUs the calling thread may run on, to pin
// senders to: under a cpuset or taskset they need not be 0..n-1.
func AllowedCPUs() ([]int, error) {
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		return nil, fmt.Errorf("read the CPUs this process may use: %w", err)
	}
	var cpus []int
	for cpu := range 8 * int(unsafe.Sizeof(allowed)) {
		if allowed.IsSet(cpu) {
			cpus = append(cpus, cpu)
		}
	}
	return cpus, nil
}
