package bpf

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// maxProgramInsns is the most instructions the kernel loads in one
// program (BPF_COMPLEXITY_LIMIT_INSNS).
const maxProgramInsns = 1_000_000

// refused explains the kernel refusing the program with f in it. The
// program alone always loads: the expression is the cause, and its size
// the likely reason.
func (f *Filter) refused(err error) error {
	expr := shorten(f.Expr)
	size := fmt.Sprintf("%d classic BPF instructions, %d once translated", len(f.Classic), len(f.bodies[target{}]))
	var verr *ebpf.VerifierError
	switch {
	case errors.Is(err, unix.E2BIG):
		return fmt.Errorf("the filter expression %q is too large for the kernel (%s; at most %d in all)", expr, size, maxProgramInsns)
	case errors.As(err, &verr):
		return fmt.Errorf("the kernel's verifier refused the filter expression %q (%s): %s", expr, size, verifierReason(verr.Log))
	}
	return explain("load the program", err)
}

// verifierReason picks the verifier's reason from its log: the last line
// that is not its closing statistics.
func verifierReason(log []string) string {
	for i := len(log) - 1; i >= 0; i-- {
		line := strings.TrimSpace(log[i])
		if line != "" && !strings.HasPrefix(line, "processed ") && !strings.HasPrefix(line, "verification time") &&
			!strings.HasPrefix(line, "stack depth") {
			return line
		}
	}
	return "no reason given"
}
