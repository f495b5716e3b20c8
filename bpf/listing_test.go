package bpf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf/asm"

	"github.com/ringcap/ringcap/bpf/bpftest"
)

// These tests read the translation without loading it: they need no
// privileges.

// listedTargets are the translations the golden listings show.
var listedTargets = map[string]target{
	"xdp":         {},
	"xdp-perfmon": {direct: true},
	"tc":          {tc: true},
	"tc-egress":   {tc: true, outbound: true},
}

// TestTranslationListings compares the translation of small expressions
// with the listings in testdata/golden/filter, which -update rewrites.
func TestTranslationListings(t *testing.T) {
	for _, c := range []struct {
		expr    string
		targets []string
	}{
		{"len > 1000", []string{"xdp", "tc"}},
		{"outbound", []string{"xdp", "tc-egress"}},
		{"vlan 100", []string{"xdp", "tc"}},
		{"ip[2:2] > 576", []string{"xdp", "tc"}},
		{"tcp[13] & 2 != 0", []string{"xdp-perfmon"}},
	} {
		f, err := CompileFilter(c.expr)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range c.targets {
			body, err := f.body(listedTargets[name])
			if err != nil {
				t.Fatalf("%q for %s: %v", c.expr, name, err)
			}
			got := fmt.Sprintf("# %s, for %s\n%v", c.expr, name, body)
			checkListing(t, listingName(c.expr, name), got)
		}
	}
}

// listingName is the golden file of expr's translation for target.
func listingName(expr, target string) string {
	words := strings.FieldsFunc(expr, func(r rune) bool { return (r < 'a' || r > 'z') && (r < '0' || r > '9') })
	slug := strings.Join(words, "-")
	return filepath.Join("..", "testdata", "golden", "filter", slug+"."+target+".txt")
}

// checkListing compares got with the golden file at path, or writes it
// with -update.
func checkListing(t *testing.T, path, got string) {
	t.Helper()
	if *bpftest.Update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./bpf -run TestTranslationListings -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("the translation differs from %s; if the change is right, rerun with -update and review the diff:\n%s", path, got)
	}
}

// TestTranslationJumps checks every jump of every translation of the
// filter corpus and of random classic programs: its label is in the
// body, it lands on an instruction within it (not inside a 64-bit
// constant load), and no path runs off the body's end.
func TestTranslationJumps(t *testing.T) {
	var bodies []asm.Instructions
	for _, expr := range filterExpressions {
		f, err := compileFilter(expr)
		if err != nil {
			t.Fatal(err)
		}
		for _, tgt := range listedTargets {
			body, err := f.body(tgt)
			if err != nil {
				t.Fatalf("%q for %+v: %v", expr, tgt, err)
			}
			bodies = append(bodies, body)
		}
	}
	r := rand.New(rand.NewPCG(27, 4))
	for range 200 {
		for _, tgt := range listedTargets {
			if body, err := translate(randomProgram(r), tgt); err == nil {
				bodies = append(bodies, body)
			}
		}
	}
	for _, body := range bodies {
		if err := checkJumpTargets(body); err != nil {
			t.Fatalf("%v in\n%v", err, body)
		}
	}
}

// checkJumpTargets checks the jumps of body as TestTranslationJumps says.
func checkJumpTargets(body asm.Instructions) error {
	symbols := make(map[string]bool)
	for _, ins := range body {
		if sym := ins.Symbol(); sym != "" {
			symbols[sym] = true
		}
	}
	for _, ins := range body {
		if ref := ins.Reference(); ref != "" && !symbols[ref] {
			return fmt.Errorf("%v jumps to a label the body does not have", ins)
		}
	}
	var raw bytes.Buffer
	if err := body.Marshal(&raw, binary.LittleEndian); err != nil {
		return err
	}
	n := raw.Len() / asm.InstructionSize
	starts := make([]bool, n)
	var decoded asm.Instructions
	for pc := 0; raw.Len() > 0; {
		var ins asm.Instruction
		if err := ins.Unmarshal(&raw, binary.LittleEndian, "linux"); err != nil {
			return err
		}
		starts[pc] = true
		decoded = append(decoded, ins)
		pc += int(ins.Size()) / asm.InstructionSize
	}
	pc := 0
	for _, ins := range decoded {
		op := ins.OpCode.JumpOp()
		if ins.OpCode.Class().IsJump() && op != asm.Call && op != asm.Exit {
			if to := pc + 1 + int(ins.Offset); to < 0 || to >= n || !starts[to] {
				return fmt.Errorf("raw instruction %d (%v) jumps to %d, not an instruction of the %d", pc, ins, to, n)
			}
		}
		pc += int(ins.Size()) / asm.InstructionSize
	}
	if last := decoded[len(decoded)-1].OpCode.JumpOp(); last != asm.Exit && last != asm.Ja {
		return fmt.Errorf("the body ends in %v, which runs off its end", decoded[len(decoded)-1])
	}
	return nil
}

// TestTranslationBudget bounds the raw instructions of translations, which
// the kernel's limits and the time a frame takes grow with: a change to
// the translator that makes them larger must mean to.
func TestTranslationBudget(t *testing.T) {
	for _, c := range []struct {
		expr        string
		xdp, direct int // the XDP translations', without and with CAP_PERFMON
		tc          int // the tc translation's, with CAP_PERFMON
	}{
		{"len > 1000", 13, 13, 15},
		{"vlan 100", 84, 84, 124},
		{"ip[2:2] > 576", 93, 93, 146},
		{"tcp", 178, 178, 331},
		{"udp port 53", 500, 592, 1484},
		{"tcp[tcpflags] & tcp-syn != 0", 224, 251, 547},
		{"ip protochain 17", 258, 312, 720},
	} {
		f, err := CompileFilter(c.expr)
		if err != nil {
			t.Fatal(err)
		}
		for tgt, budget := range map[target]int{{}: c.xdp, {direct: true}: c.direct, {tc: true, direct: true}: c.tc} {
			body, err := f.body(tgt)
			if err != nil {
				t.Fatal(err)
			}
			if n := rawLen(body); n > budget {
				t.Errorf("%q for %+v: %d raw instructions, over its budget of %d", c.expr, tgt, n, budget)
			}
		}
	}
}
