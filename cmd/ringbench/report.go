package main

import (
	"fmt"
	"io"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

func printTables(w io.Writer, rows, idle []row) {
	// The machine's CPU time with no tool, for the same traffic: what a
	// tool's run adds to it is the tool's, wherever it ran.
	noTool := map[string]time.Duration{}
	for _, r := range rows {
		if r.tool == "none" && r.err == nil {
			noTool[r.scenario.name] = r.machine
		}
	}
	fmt.Fprintln(w, "| traffic | tool | frames received | offered/s | received/s | written | written/s | lost | loss | CPU s | CPU µs/written | machine CPU s, less no tool | machine CPU µs/written |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		if r.err != nil {
			fmt.Fprintf(w, "| %s | %s | %d | | | | | | | | %v | | |\n", r.scenario.name, r.tool, r.scenario.frames, r.err)
			continue
		}
		if r.tool == "none" {
			fmt.Fprintf(w, "| %s | none | %d | %.2fM | %.2fM | | | | | | | (%.2f s in all) | |\n", r.scenario.name, r.received, r.offered/1e6, r.rxRate/1e6, r.machine.Seconds())
			continue
		}
		machine := r.machine - noTool[r.scenario.name]
		// Frames written per second of traffic: what the tool keeps up
		// with, where the share written is capped by what was sent.
		writtenRate := float64(r.written) * r.offered / float64(r.scenario.frames)
		fmt.Fprintf(w, "| %s | %s | %d | %.2fM | %.2fM | %d | %.2fM | %d | %.1f%% | %.2f | %.3f | %.2f | %.3f |\n",
			r.scenario.name, r.tool, r.received, r.offered/1e6, r.rxRate/1e6, r.written, writtenRate/1e6, r.lost(),
			r.lossPercent(), r.cpu.Seconds(), perWritten(r.cpu, r.written), machine.Seconds(), perWritten(machine, r.written))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Attached, nothing selected (60-byte frames; ringcap with --mtu 9000; median of the runs):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| traffic | tool | received/s | of the rate with no tool |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	base := map[string]float64{}
	for _, r := range idle {
		if r.tool == "none" {
			base[r.scenario.name] = r.rxRate
		}
	}
	for _, r := range idle {
		if r.err != nil {
			fmt.Fprintf(w, "| %s | %s | %v | |\n", r.scenario.name, r.tool, r.err)
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %.2fM | %.0f%% |\n", r.scenario.name, r.tool, r.rxRate/1e6, 100*r.rxRate/base[r.scenario.name])
	}
}

// perWritten is d in microseconds per frame written.
func perWritten(d time.Duration, written uint64) float64 {
	if written == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(written)
}

// plotLoss draws, per tool, the share of frames lost against the offered
// rate.
func plotLoss(path string, rows []row) error {
	p := plot.New()
	p.Title.Text = "Oversize frames lost, by the rate reaching the interface"
	p.X.Label.Text = "rate reaching the interface (M frames/s)"
	p.Y.Label.Text = "lost (%)"
	var names []string
	byTool := map[string]plotter.XYs{}
	for _, r := range rows {
		if r.err != nil || r.tool == "none" {
			continue
		}
		if _, ok := byTool[r.tool]; !ok {
			names = append(names, r.tool)
		}
		byTool[r.tool] = append(byTool[r.tool], plotter.XY{X: r.rxRate / 1e6, Y: r.lossPercent()})
	}
	var lines []any
	for _, n := range names {
		xys := byTool[n]
		slices.SortFunc(xys, func(a, b plotter.XY) int {
			switch {
			case a.X < b.X:
				return -1
			case a.X > b.X:
				return 1
			}
			return 0
		})
		lines = append(lines, n, xys)
	}
	if err := plotutil.AddLinePoints(p, lines...); err != nil {
		return err
	}
	return p.Save(7*vg.Inch, 4*vg.Inch, path)
}
