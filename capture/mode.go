package capture

import "fmt"

// Mode is how the program is attached to an interface.
type Mode int

const (
	// ModeAuto attaches in native mode; where the driver does not take
	// it, --hook auto captures at tcx ingress instead. It never chooses
	// generic mode.
	ModeAuto Mode = iota
	// ModeNative runs the program in the driver, before any socket
	// buffer is allocated.
	ModeNative
	// ModeGeneric runs the program on socket buffers; it works on any
	// interface, at a higher cost per frame.
	ModeGeneric
)

var modeNames = []string{"auto", "native", "generic"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode reads a --mode value.
func ParseMode(s string) (Mode, error) {
	for i, name := range modeNames {
		if s == name {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("unknown mode %q: use auto, native or generic", s)
}
