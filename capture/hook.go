package capture

import (
	"fmt"
	"strings"
)

// Direction is which way the frames a hook sees travel.
type Direction int

const (
	// Inbound frames were received by the interface.
	Inbound Direction = iota
	// Outbound frames are sent by it.
	Outbound
)

func (d Direction) String() string {
	if d == Outbound {
		return "outbound"
	}
	return "inbound"
}

// Directions are the directions to capture, as tcpdump's -Q takes them.
type Directions int

const (
	InOut Directions = iota // both, tcpdump's default
	In
	Out
)

// Has says whether d includes dir.
func (d Directions) Has(dir Direction) bool {
	switch d {
	case In:
		return dir == Inbound
	case Out:
		return dir == Outbound
	}
	return true
}

// ParseDirections reads a -Q value.
func ParseDirections(s string) (Directions, error) {
	switch s {
	case "inout", "":
		return InOut, nil
	case "in":
		return In, nil
	case "out":
		return Out, nil
	}
	return 0, fmt.Errorf("unknown direction %q: use in, out or inout", s)
}

// HookChoice is where inbound frames are captured (--hook).
type HookChoice int

const (
	// HookAuto captures inbound frames at XDP in native mode, or at tcx
	// ingress where another XDP program holds the interface or the
	// driver does not run ringcap's program itself.
	HookAuto HookChoice = iota
	HookXDP
	HookTC
)

// ParseHook reads a --hook value.
func ParseHook(s string) (HookChoice, error) {
	switch s {
	case "auto", "":
		return HookAuto, nil
	case "xdp":
		return HookXDP, nil
	case "tc":
		return HookTC, nil
	}
	return 0, fmt.Errorf("unknown hook %q: use auto, xdp or tc", s)
}

// Hook is one place ringcap's program is attached: an interface and a
// direction. The records of each hook go to a file interface of their
// own.
type Hook struct {
	Interface string
	Index     int
	Direction Direction
	// XDP says the hook is XDP; else it is tcx (ingress or egress).
	XDP  bool
	Mode Mode // XDP's, as attached: native or generic
	// MultiBuffer says the multi-buffer XDP build is attached, which can
	// see frames spread over several buffers (jumbo frames, generic mode)
	// at some cost per frame; see bpf/ringcap.c.
	MultiBuffer bool
	// Tags says an XDP hook gets back the VLAN tags the driver takes out
	// of frames (rx-vlan-offload); tc always does.
	Tags bool
	// TagsCapped says the driver would hand XDP its VLAN tags, but the
	// capture has bound as many programs to devices as it may.
	TagsCapped bool
	// Behind names the XDP program that holds the interface, where
	// inbound frames are captured at tcx ingress because of it.
	Behind string
	// WhyNotXDP says why inbound frames are captured at tcx ingress
	// where HookAuto would have taken native XDP.
	WhyNotXDP Note
}

// Note is something a user must know of a hook: of the frames it cannot
// see, or of why it is where it is.
type Note struct {
	Text string
	// Unless is the setting under which the note would not hold, if
	// there is one: a program adds how its users choose it.
	Unless Setting
}

// String is the note in the library's words.
func (n Note) String() string { return n.Text }

// Setting is a choice of Config that a Note points to.
type Setting int

const (
	NoSetting Setting = iota
	// SettingHookTC is Config.Hook HookTC: tcx ingress keeps the VLAN
	// tags the driver takes out of frames.
	SettingHookTC
	// SettingModeNative is Config.Mode ModeNative: it attaches XDP where
	// HookAuto takes tcx ingress as the cheaper hook.
	SettingModeNative
)

// Attachment says in words how the hook is attached, for people and for
// the file's if_description.
func (h Hook) Attachment() string {
	switch {
	case !h.XDP && h.Direction == Outbound:
		return "tcx egress"
	case !h.XDP:
		return "tcx ingress"
	case h.MultiBuffer:
		return fmt.Sprintf("XDP %s mode, multi-buffer", h.Mode)
	}
	return fmt.Sprintf("XDP %s mode", h.Mode)
}

// Notes are what a user must know of the frames the hook cannot see, and
// of why it is not where HookAuto would put it.
func (h Hook) Notes() []Note {
	var notes []Note
	if h.Behind != "" {
		notes = append(notes, Note{Text: fmt.Sprintf("behind XDP program %s: frames it drops, redirects or transmits are not seen", h.Behind)})
	}
	if h.WhyNotXDP.Text != "" {
		notes = append(notes, h.WhyNotXDP)
	}
	if h.XDP && h.Mode == ModeGeneric {
		notes = append(notes, Note{Text: "generic XDP costs as much per frame as tcx ingress or more, and some drivers make the kernel warn"})
	}
	switch {
	case h.TagsCapped:
		notes = append(notes, Note{Text: fmt.Sprintf("VLAN tags the driver takes out of frames are missing: ringcap binds programs to at most %d devices", maxBound), Unless: SettingHookTC})
	case h.XDP && !h.Tags:
		notes = append(notes, Note{Text: "VLAN tags the driver takes out of frames may be missing", Unless: SettingHookTC})
	}
	return notes
}

// Describe is the hook in a few words: the direction, the attachment and
// the notes, each in noteText's words (Note.String: the library's own).
func (h Hook) Describe(noteText func(Note) string) string {
	words := []string{h.Direction.String() + ", " + h.Attachment()}
	for _, n := range h.Notes() {
		words = append(words, noteText(n))
	}
	return strings.Join(words, "; ")
}
