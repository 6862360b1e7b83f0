// yamuxpeer: a hashicorp/yamux v0.1.2 peer for interop tests of the Rust yamux crate.
//
//	yamuxpeer -sock PATH -role client|server -mode MODE [-listen] [-log] [-n N]
//
// It dials (or, with -listen, listens on) the unix socket PATH, runs yamux with the given role
// over it and plays MODE (see scenarios.go; bench-* modes are in bench.go). Every frame header
// crossing the socket is parsed by a tap (counted; logged with -log). The last line is
// "PASS <mode> ..." (exit 0) or "FAIL <mode>: <reason>" (exit 1); "INFO" lines carry details.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

var (
	sockF   = flag.String("sock", "", "unix socket path")
	roleF   = flag.String("role", "client", "yamux role of the Go side: client or server")
	modeF   = flag.String("mode", "", "scenario to run")
	listenF = flag.Bool("listen", false, "listen on -sock instead of dialing it")
	logF    = flag.Bool("log", false, "log every frame header")
	nF      = flag.Int("n", 0, "size or count parameter of the mode")
	benchF  = flag.String("bench", "rtt", "bench-client: thru-up, thru-down or rtt")
	msgF    = flag.Int("msg", 64, "bench rtt: message size")
)

var t0 = time.Now()

func info(f string, a ...interface{}) {
	fmt.Printf("%8.1fms INFO "+f+"\n", append([]interface{}{ms(time.Since(t0))}, a...)...)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ---- frame tap

type frame struct {
	at    time.Time
	out   bool // sent by Go
	typ   uint8
	flags uint16
	id    uint32
	len   uint32
}

type parser struct {
	out  bool
	hdr  []byte
	skip uint32
}

type tap struct {
	net.Conn
	mu     sync.Mutex
	in     parser
	outP   parser
	frames []frame
	keep   bool
	counts map[string]int
	// finOnData counts Rust data frames with payload that carry FIN or RST.
	finOnData int
}

func newTap(c net.Conn, keep bool) *tap {
	return &tap{Conn: c, in: parser{out: false}, outP: parser{out: true}, keep: keep, counts: map[string]int{}}
}

var typeNames = []string{"Data", "Window", "Ping", "GoAway"}

func flagStr(f uint16) string {
	var s []string
	for i, n := range []string{"SYN", "ACK", "FIN", "RST"} {
		if f&(1<<i) != 0 {
			s = append(s, n)
		}
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, "|")
}

func (t *tap) feed(p *parser, b []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(b) > 0 {
		if p.skip > 0 {
			k := uint32(len(b))
			if k > p.skip {
				k = p.skip
			}
			p.skip -= k
			b = b[k:]
			continue
		}
		need := 12 - len(p.hdr)
		if need > len(b) {
			need = len(b)
		}
		p.hdr = append(p.hdr, b[:need]...)
		b = b[need:]
		if len(p.hdr) < 12 {
			continue
		}
		h := p.hdr
		p.hdr = nil
		f := frame{at: time.Now(), out: p.out, typ: h[1], flags: binary.BigEndian.Uint16(h[2:4]),
			id: binary.BigEndian.Uint32(h[4:8]), len: binary.BigEndian.Uint32(h[8:12])}
		if f.typ == 0 {
			p.skip = f.len
		}
		dir := "<-rust"
		if f.out {
			dir = "->rust"
		}
		tn := "?"
		if int(f.typ) < len(typeNames) {
			tn = typeNames[f.typ]
		}
		t.counts[dir+" "+tn+" "+flagStr(f.flags)]++
		if !f.out && f.typ == 0 && f.len > 0 && f.flags&(4|8) != 0 {
			// FIN/RST on a data frame with payload: hashicorp applies the flags before
			// buffering the payload, so its reader may lose that data.
			t.finOnData++
		}
		if t.keep {
			t.frames = append(t.frames, f)
		}
		if *logF {
			fmt.Printf("%8.1fms FRAME %s %-6s %-8s id=%d len=%d\n", ms(time.Since(t0)), dir, tn, flagStr(f.flags), f.id, f.len)
		}
	}
}

func (t *tap) Read(b []byte) (int, error) {
	n, err := t.Conn.Read(b)
	t.feed(&t.in, b[:n])
	return n, err
}

func (t *tap) Write(b []byte) (int, error) {
	t.feed(&t.outP, b)
	return t.Conn.Write(b)
}

// find returns the first kept frame matching pred.
func (t *tap) find(pred func(f frame) bool) (frame, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range t.frames {
		if pred(f) {
			return f, true
		}
	}
	return frame{}, false
}

func (t *tap) count(pred func(f frame) bool) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, f := range t.frames {
		if pred(f) {
			n++
		}
	}
	return n
}

// waitFor polls the tap until pred matches a frame (or the timeout passes).
func (t *tap) waitFor(timeout time.Duration, pred func(f frame) bool) (frame, bool) {
	end := time.Now().Add(timeout)
	for {
		if f, ok := t.find(pred); ok {
			return f, true
		}
		if time.Now().After(end) {
			return frame{}, false
		}
		time.Sleep(time.Millisecond)
	}
}

func (t *tap) summary() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var parts []string
	for k, v := range t.counts {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	return strings.Join(parts, ", ")
}

// ---- data pattern (same generator as the Rust tests: xorshift64*)

type pattern struct {
	state, word uint64
	left        uint32
}

func newPattern(seed uint64) *pattern { return &pattern{state: seed*0x9E3779B97F4A7C15 | 1} }

func (p *pattern) next() byte {
	if p.left == 0 {
		p.state ^= p.state >> 12
		p.state ^= p.state << 25
		p.state ^= p.state >> 27
		p.word = p.state * 0x2545F4914F6CDD1D
		p.left = 8
	}
	b := byte(p.word)
	p.word >>= 8
	p.left--
	return b
}

func (p *pattern) fill(b []byte) {
	for i := range b {
		b[i] = p.next()
	}
}

// fnv1a64 over a stream.
type fnv struct{ h uint64 }

func newFnv() *fnv { return &fnv{h: 0xcbf29ce484222325} }

func (f *fnv) update(b []byte) {
	for _, c := range b {
		f.h ^= uint64(c)
		f.h *= 0x100000001b3
	}
}

// writePattern writes total bytes of pattern seed in chunk-sized writes; returns the hash.
func writePattern(w io.Writer, seed uint64, total, chunk int) (uint64, error) {
	p := newPattern(seed)
	h := newFnv()
	buf := make([]byte, chunk)
	for sent := 0; sent < total; {
		n := chunk
		if total-sent < n {
			n = total - sent
		}
		p.fill(buf[:n])
		h.update(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			return h.h, fmt.Errorf("write at %d: %w", sent, err)
		}
		sent += n
	}
	return h.h, nil
}

// readPattern reads to EOF, checking every byte; returns the count and hash.
func readPattern(r io.Reader, seed uint64) (int, uint64, error) {
	p := newPattern(seed)
	h := newFnv()
	buf := make([]byte, 64<<10)
	got := 0
	for {
		n, err := r.Read(buf)
		for i := 0; i < n; i++ {
			if want := p.next(); buf[i] != want {
				return got + i, h.h, fmt.Errorf("mismatch at byte %d: got %#x want %#x", got+i, buf[i], want)
			}
		}
		h.update(buf[:n])
		got += n
		if err == io.EOF {
			return got, h.h, nil
		}
		if err != nil {
			return got, h.h, fmt.Errorf("read after %d bytes: %w", got, err)
		}
	}
}

func readLine(st *yamux.Stream, timeout time.Duration) (string, error) {
	st.SetReadDeadline(time.Now().Add(timeout))
	defer st.SetReadDeadline(time.Time{})
	var b []byte
	one := make([]byte, 1)
	for {
		n, err := st.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				return string(b), nil
			}
			b = append(b, one[0])
		}
		if err != nil {
			return string(b), err
		}
	}
}

func expectLine(st *yamux.Stream, want string) error {
	got, err := readLine(st, 10*time.Second)
	if err != nil {
		return fmt.Errorf("reading line %q: %v (got %q)", want, err, got)
	}
	if got != want {
		return fmt.Errorf("got line %q, want %q", got, want)
	}
	return nil
}

func main() {
	flag.Parse()
	var conn net.Conn
	var err error
	if *listenF {
		os.Remove(*sockF)
		l, lerr := net.Listen("unix", *sockF)
		if lerr != nil {
			fail(lerr)
		}
		fmt.Println("READY")
		conn, err = l.Accept()
		l.Close()
	} else {
		conn, err = net.Dial("unix", *sockF)
	}
	if err != nil {
		fail(err)
	}
	t0 = time.Now()
	m, ok := modes[*modeF]
	if !ok {
		fail(fmt.Errorf("unknown mode %q", *modeF))
	}
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = os.Stderr
	if m.config != nil {
		m.config(cfg)
	}
	t := newTap(conn, !strings.HasPrefix(*modeF, "bench") && *modeF != "bulk")
	var s *yamux.Session
	if *roleF == "server" {
		s, err = yamux.Server(t, cfg)
	} else {
		s, err = yamux.Client(t, cfg)
	}
	if err != nil {
		fail(err)
	}
	if err := m.run(s, t); err != nil {
		info("frames: %s", t.summary())
		fail(err)
	}
	if t.finOnData > 0 {
		fail(fmt.Errorf("Rust sent %d data frames with payload and FIN/RST (racy in hashicorp)", t.finOnData))
	}
	info("frames: %s", t.summary())
	fmt.Printf("PASS %s\n", *modeF)
}

func fail(err error) {
	fmt.Printf("FAIL %s: %v\n", *modeF, err)
	os.Exit(1)
}

type mode struct {
	config func(c *yamux.Config)
	run    func(s *yamux.Session, t *tap) error
}

var errClosed = errors.New("session closed unexpectedly")
