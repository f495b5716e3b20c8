package bpf

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcap"
	cbpf "golang.org/x/net/bpf"
)

// notAtXDP are the pcap-filter keywords that cannot mean anything to a
// program that sees an interface's frames, and why.
var notAtXDP = map[string]string{
	"ifname":  "it names an interface in OpenBSD pf logs",
	"on":      "it names an interface in OpenBSD pf logs",
	"ifindex": "it reads the interface index of Linux cooked captures",
}

// InterfaceKeywordError is a filter expression that selects frames by
// the interface they came in on, with a keyword (notAtXDP) that only
// other link types carry: the interfaces are chosen where the program is
// attached instead.
type InterfaceKeywordError struct {
	Expr    string // the expression, shortened
	Keyword string
	Why     string
}

func (e *InterfaceKeywordError) Error() string {
	return fmt.Sprintf("filter expression %q: %q cannot be used here: %s", e.Expr, e.Keyword, e.Why)
}

// MaxFilterWords bounds the size of an expression given to libpcap. Its
// optimiser takes memory that grows with the square of the expression's
// size and time with about its cube, and sets no bound of its own: 200
// `host` terms (600 words) take 13 MB and half a second, 1,000 take
// 118 MB and a minute, 10,000 several gigabytes. At this bound the
// dearest primitive measured, portrange (`portrange 1-2 or 3-4 or ...`,
// 300 terms), takes 93 MB and 35 seconds, as it would in tcpdump.
const MaxFilterWords = 600

// CompileFilter compiles expr with libpcap and translates it. The error
// is libpcap's own words for an expression it refuses.
func CompileFilter(expr string) (*Filter, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, errors.New("empty filter expression")
	}
	if n := filterWords(expr); n > MaxFilterWords {
		return nil, fmt.Errorf("filter expression %q: %d words, more than the %d ringcap gives libpcap, whose optimiser needs memory "+
			"that grows with the square of the size: use fewer terms (net ADDR/LEN for many hosts, portrange for many ports)",
			shorten(expr), n, MaxFilterWords)
	}
	return compileFilter(expr)
}

// compileFilter is CompileFilter past the bound on the expression's size.
func compileFilter(expr string) (*Filter, error) {
	for _, word := range strings.FieldsFunc(expr, func(r rune) bool { return strings.ContainsRune(" \t\n()!&|", r) }) {
		if why, ok := notAtXDP[word]; ok {
			return nil, &InterfaceKeywordError{Expr: shorten(expr), Keyword: word, Why: why}
		}
	}
	raw, err := pcap.CompileBPFFilter(layers.LinkTypeEthernet, MaxSnapLen, expr)
	if err != nil {
		return nil, fmt.Errorf("filter expression %q: %v", shorten(expr), err)
	}
	classic := make([]cbpf.Instruction, len(raw))
	for i, ins := range raw {
		classic[i] = cbpf.RawInstruction{Op: ins.Code, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}.Disassemble()
	}
	f, err := newFilter(expr, classic)
	if err != nil {
		return nil, fmt.Errorf("filter expression %q: %w", shorten(expr), err)
	}
	return f, nil
}

// filterWords counts the words of an expression, as near to libpcap's
// scanner as a bound needs (libpcap has no way to count them short of
// compiling): what spaces separate, with parentheses, `!`, `&&` and `||`
// words of their own, so that `a||b` counts as `a or b` does.
func filterWords(expr string) int {
	n, inWord := 0, false
	for i := 0; i < len(expr); i++ {
		rest := expr[i:]
		switch {
		case strings.ContainsRune(" \t\n\r", rune(expr[i])):
			inWord = false
		case strings.HasPrefix(rest, "&&") || strings.HasPrefix(rest, "||"):
			n, inWord = n+1, false
			i++
		case rest[0] == '(' || rest[0] == ')' || (rest[0] == '!' && !strings.HasPrefix(rest, "!=")):
			n, inWord = n+1, false
		case !inWord:
			n, inWord = n+1, true
		}
	}
	return n
}

// shorten keeps an error line short when the expression is long.
func shorten(expr string) string {
	if len(expr) > 60 {
		return expr[:57] + "..."
	}
	return expr
}
