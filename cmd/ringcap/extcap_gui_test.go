package main

import (
	"bufio"
	"bytes"
	"fmt"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringcap/ringcap/bpf/bpftest"
)

// xDisplay is an X server of the test's own (Xvfb) in a network
// namespace, and what the test reads of its screen.
type xDisplay struct {
	ns, name string // the namespace, and the display (":99")
	dir      string // where screenshots go
}

// startXvfb starts Xvfb in namespace ns on a display it chooses, one
// screen of 1280x960.
func startXvfb(t *testing.T, ns string) *xDisplay {
	t.Helper()
	for _, tool := range []string{"Xvfb", "xwd", "xwdtopnm", "pamscale", "tesseract", "xdotool"} {
		bpftest.RequireTool(t, tool)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// -displayfd: Xvfb takes a free display and writes its number to
	// descriptor 3, once it accepts connections.
	cmd := exec.Command("ip", "netns", "exec", ns, "Xvfb", "-displayfd", "3", "-screen", "0", "1280x960x24", "-nolisten", "tcp")
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	// SIGTERM, after which Xvfb removes its lock file and socket.
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	number := make(chan string, 1)
	go func() { line, _ := bufio.NewReader(r).ReadString('\n'); number <- strings.TrimSpace(line) }()
	select {
	case n := <-number:
		if _, err := strconv.Atoi(n); err != nil {
			t.Fatalf("Xvfb -displayfd gave %q", n)
		}
		return &xDisplay{ns: ns, name: ":" + n, dir: t.TempDir()}
	case <-time.After(15 * time.Second):
		t.Fatal("Xvfb did not start within 15s")
	}
	return nil
}

// ocrWord is a word tesseract read on the screen, where it is.
type ocrWord struct {
	text      string
	line      string // the block, paragraph and line it is in
	left, top int    // in the screen's pixels
}

// read takes a screenshot with xwd and reads it with tesseract, at twice
// its size, which Wireshark's small fonts need.
func (x *xDisplay) read(t *testing.T) (text string, words []ocrWord) {
	t.Helper()
	shot := filepath.Join(x.dir, "screen.xwd")
	if out, err := exec.Command("ip", "netns", "exec", x.ns, "xwd", "-root", "-silent", "-display", x.name, "-out", shot).CombinedOutput(); err != nil {
		t.Fatalf("xwd: %v\n%s", err, out)
	}
	script := fmt.Sprintf("xwdtopnm %s 2>/dev/null | pamscale 2 > %s/screen.pnm && tesseract %s/screen.pnm - tsv 2>/dev/null", shot, x.dir, x.dir)
	out, err := exec.Command("sh", "-c", script).Output()
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	var lines []string
	last := ""
	for _, row := range strings.Split(string(out), "\n") {
		f := strings.Split(row, "\t")
		if len(f) < 12 || f[0] != "5" || strings.TrimSpace(f[11]) == "" {
			continue // tesseract's TSV: level 5 rows are words
		}
		left, _ := strconv.Atoi(f[6])
		top, _ := strconv.Atoi(f[7])
		w := ocrWord{text: f[11], line: f[2] + "." + f[3] + "." + f[4], left: left / 2, top: top / 2}
		if w.line != last {
			lines = append(lines, "")
			last = w.line
		}
		lines[len(lines)-1] = strings.TrimSpace(lines[len(lines)-1] + " " + w.text)
		words = append(words, w)
	}
	return strings.Join(lines, "\n"), words
}

// waitFor reads the screen until every one of want is on a line of it,
// in any case (tesseract takes some capitals for small letters), and
// returns the last read.
func (x *xDisplay) waitFor(t *testing.T, timeout time.Duration, want ...string) (string, []ocrWord) {
	t.Helper()
	var text string
	var words []ocrWord
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(time.Second) {
		text, words = x.read(t)
		missing := false
		for _, w := range want {
			missing = missing || !strings.Contains(strings.ToLower(text), strings.ToLower(w))
		}
		if !missing {
			return text, words
		}
	}
	t.Fatalf("the screen does not show %q within %v; it reads:\n%s", want, timeout, text)
	return "", nil
}

// xdotool runs xdotool with args on the display: moves, clicks, keys.
func (x *xDisplay) xdotool(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", x.ns, "env", "DISPLAY=" + x.name, "xdotool"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("xdotool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// click clicks at x, y of the screen.
func (x *xDisplay) click(t *testing.T, atX, atY int) {
	t.Helper()
	x.xdotool(t, "mousemove", strconv.Itoa(atX), strconv.Itoa(atY), "click", "1")
}

// pixel is the colour at x, y of the screen.
func (x *xDisplay) pixel(t *testing.T, atX, atY int) color.RGBA {
	t.Helper()
	shot := filepath.Join(x.dir, "pixel.xwd")
	if out, err := exec.Command("ip", "netns", "exec", x.ns, "xwd", "-root", "-silent", "-display", x.name, "-out", shot).CombinedOutput(); err != nil {
		t.Fatalf("xwd: %v\n%s", err, out)
	}
	out, err := exec.Command("sh", "-c", "xwdtopnm "+shot+" 2>/dev/null | pnmtopng").Output()
	if err != nil {
		t.Fatalf("xwdtopnm | pnmtopng: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	return color.RGBAModel.Convert(img.At(atX, atY)).(color.RGBA)
}

// wordAt is where the first word text is among words, in the line of the
// word inLine ("" for any).
func wordAt(t *testing.T, words []ocrWord, text, inLine string) ocrWord {
	t.Helper()
	line := ""
	for _, w := range words {
		if inLine != "" && w.text == inLine {
			line = w.line
		}
	}
	for _, w := range words {
		if w.text == text && (inLine == "" || w.line == line) {
			return w
		}
	}
	t.Fatalf("no word %q (in the line of %q) among those read", text, inLine)
	return ocrWord{}
}

// startWireshark runs Wireshark on the display with the extcap folder
// installExtcap made (config), showing only extcap interfaces on its
// welcome page (the others' types hidden), in a window as large as the
// screen, so that all of ringcap's are in view.
func (x *xDisplay) startWireshark(t *testing.T, config string) {
	t.Helper()
	for name, content := range map[string]string{
		"preferences":   "gui.interfaces_hidden_types: 0,1,2,3,4,5,6,7,9\n",
		"recent_common": "gui.geometry_main_x: 0\ngui.geometry_main_y: 0\ngui.geometry_main_width: 1280\ngui.geometry_main_height: 960\n",
	} {
		if err := os.WriteFile(filepath.Join(config, "wireshark", name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	runtime := t.TempDir()
	if err := os.Chmod(runtime, 0o700); err != nil {
		t.Fatal(err)
	}
	ws := exec.Command("ip", "netns", "exec", x.ns, "env", "DISPLAY="+x.name, "XDG_CONFIG_HOME="+config, "XDG_RUNTIME_DIR="+runtime,
		"HOME="+t.TempDir(), "wireshark")
	ws.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var wsLog bytes.Buffer
	ws.Stdout, ws.Stderr = &wsLog, &wsLog
	if err := ws.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ws.Process.Kill()
		ws.Wait()
		if t.Failed() {
			t.Logf("wireshark said:\n%s", wsLog.String())
		}
	})
}

// Wireshark, run on a display of the test's own with the extcap
// installed in its personal folder, lists ringcap's interfaces on its
// welcome page; the gear beside one opens the dialog of record's options
// with their defaults; with the interface chosen, the capture filter
// field turns red with ringcap's reason for a filter libpcap compiles and
// ringcap refuses, green for one it takes.
func TestExtcapWireshark(t *testing.T) {
	bpftest.RequireTool(t, "wireshark")
	bpftest.RequireTool(t, "pnmtopng")
	p := newVethPair(t)
	// Names OCR reads without doubt (it takes rc-rx2 for re-rx2).
	for i, name := range []string{"alpha", "bravo"} {
		runIP(t, "-n", p.Rx, "link", "set", []string{rxIf, rxIf2}[i], "name", name)
	}
	config := installExtcap(t)
	x := startXvfb(t, p.Rx)
	x.startWireshark(t, config)
	_, words := x.waitFor(t, 60*time.Second, "ringcap on every interface: ringcap-any", "ringcap on lo: ringcap-lo",
		"ringcap on alpha: ringcap-alpha", "ringcap on bravo: ringcap-bravo")
	line, field := wordAt(t, words, "ringcap", "ringcap-alpha"), wordAt(t, words, "Enter", "")
	x.click(t, line.left-19, line.top+6) // the gear, left of the line
	x.waitFor(t, 20*time.Second, "Frames above an L3 length of 1500", "All frames, whatever their length", "Snap length 256",
		"Direction received and sent", "Hook for received frames auto", "Ring size", "Stop after")
	x.xdotool(t, "key", "Escape")
	x.click(t, line.left+20, line.top+6)
	x.click(t, field.left+300, field.top+6)
	x.xdotool(t, "type", "--delay", "20", "ip6 and vlan and mpls")
	x.waitFor(t, 20*time.Second, `filter expression "ip6 and vlan and mpls": expression rejects all packets`)
	if c := x.pixel(t, field.left+400, field.top+4); c.R < c.G+40 {
		t.Errorf("the capture filter field is %v for a filter ringcap refuses, want red", c)
	}
	x.xdotool(t, "key", "ctrl+a", "BackSpace")
	x.xdotool(t, "type", "--delay", "20", "icmp")
	if !waitFor(10*time.Second, func() bool { c := x.pixel(t, field.left+400, field.top+4); return c.G > c.R+40 }) {
		t.Errorf("the capture filter field is %v for icmp, want green", x.pixel(t, field.left+400, field.top+4))
	}
}
