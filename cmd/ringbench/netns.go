package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// pair is two network namespaces joined by a veth pair, MTU 9000 unless
// setMTU changes it, as in ringcap's own tests: the generator sends from
// txIf, the tools listen on rxIf. Nothing leaves them.
type pair struct {
	tx, rx string
}

const (
	txIf = "rb-tx"
	rxIf = "rb-rx"
)

func newPair() (*pair, error) {
	p := &pair{tx: fmt.Sprintf("ringbench-%d-tx", os.Getpid()), rx: fmt.Sprintf("ringbench-%d-rx", os.Getpid())}
	queues := strconv.Itoa(runtime.NumCPU())
	for _, args := range [][]string{
		{"netns", "add", p.tx},
		{"netns", "add", p.rx},
		// A queue per CPU, as on a multi-queue NIC: veth hands a frame
		// sent on CPU n to the peer's queue n, whose NAPI runs there.
		{"link", "add", txIf, "netns", p.tx, "numtxqueues", queues, "numrxqueues", queues,
			"type", "veth", "peer", "name", rxIf, "netns", p.rx, "numtxqueues", queues, "numrxqueues", queues},
		{"-n", p.tx, "link", "set", txIf, "mtu", "9000", "up"},
		{"-n", p.rx, "link", "set", rxIf, "mtu", "9000", "up"},
		{"-n", p.tx, "addr", "add", "198.18.0.1/30", "dev", txIf},
		{"-n", p.rx, "addr", "add", "198.18.0.2/30", "dev", rxIf},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			p.close()
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return p, nil
}

func (p *pair) close() {
	exec.Command("ip", "netns", "del", p.tx).Run()
	exec.Command("ip", "netns", "del", p.rx).Run()
}

// setMTU sets both ends' MTU.
func (p *pair) setMTU(mtu int) error {
	for _, end := range []struct{ ns, ifname string }{{p.tx, txIf}, {p.rx, rxIf}} {
		if out, err := exec.Command("ip", "-n", end.ns, "link", "set", end.ifname, "mtu", strconv.Itoa(mtu)).CombinedOutput(); err != nil {
			return fmt.Errorf("set MTU %d on %s: %v: %s", mtu, end.ifname, err, out)
		}
	}
	return nil
}

// rxPackets reads the receiving interface's packet counter.
func (p *pair) rxPackets() (uint64, error) {
	out, err := exec.Command("ip", "-n", p.rx, "-s", "-j", "link", "show", rxIf).Output()
	if err != nil {
		return 0, fmt.Errorf("ip link show: %w", err)
	}
	var links []struct {
		Stats64 struct {
			Rx struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return 0, fmt.Errorf("ip link show: unexpected output %q", out)
	}
	return links[0].Stats64.Rx.Packets, nil
}

// inNetns runs f on a thread moved into namespace ns; the thread is
// discarded afterwards.
func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open namespace %s: %w", ns, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}
