package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// Frame predicates.
func in(typ uint8, flags uint16, id uint32) func(f frame) bool {
	return func(f frame) bool { return !f.out && f.typ == typ && f.flags&flags == flags && f.id == id }
}

func out(typ uint8, flags uint16, id uint32) func(f frame) bool {
	return func(f frame) bool { return f.out && f.typ == typ && f.flags&flags == flags && f.id == id }
}

const (
	tData, tWindow, tPing, tGoAway = 0, 1, 2, 3
	fSYN, fACK, fFIN, fRST         = 1, 2, 4, 8
)

func acceptTimeout(s *yamux.Session, d time.Duration) (*yamux.Stream, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return s.AcceptStreamWithContext(ctx)
}

func waitClosed(s *yamux.Session, d time.Duration) bool {
	select {
	case <-s.CloseChan():
		return true
	case <-time.After(d):
		return false
	}
}

var modes = map[string]mode{
	// Go (client) opens 3 streams and writes nothing. Rust must ACK them at once, or Go's
	// 2 s StreamOpenTimeout closes the session. Rust accepts only the first until told.
	"ack-nodata": {
		config: func(c *yamux.Config) {
			c.StreamOpenTimeout = 2 * time.Second
			c.KeepAliveInterval = 500 * time.Millisecond
			c.ConnectionWriteTimeout = time.Second
		},
		run: func(s *yamux.Session, t *tap) error {
			var sts []*yamux.Stream
			for i := 0; i < 3; i++ {
				st, err := s.OpenStream()
				if err != nil {
					return err
				}
				sts = append(sts, st)
			}
			for _, st := range sts {
				syn, _ := t.find(out(tWindow, fSYN, st.StreamID()))
				ack, ok := t.waitFor(time.Second, in(tWindow, fACK, st.StreamID()))
				if !ok {
					return fmt.Errorf("no ACK for stream %d within 1s", st.StreamID())
				}
				info("stream %d: ACK %.3fms after SYN (no data written; the Rust app accepts streams 3 and 5 only after Go's 4 s wait)", st.StreamID(), ms(ack.at.Sub(syn.at)))
			}
			time.Sleep(4 * time.Second) // twice the StreamOpenTimeout
			if s.IsClosed() {
				return errClosed
			}
			rtt, err := s.Ping()
			if err != nil {
				return fmt.Errorf("ping: %v", err)
			}
			info("after 4s idle: session open, ping rtt %v, Rust pings answered so far: %d", rtt, t.count(out(tPing, fACK, 0)))
			for _, st := range sts {
				msg := fmt.Sprintf("late %d", st.StreamID())
				if _, err := st.Write([]byte(msg + "\n")); err != nil {
					return err
				}
				if err := expectLine(st, msg); err != nil {
					return err
				}
			}
			return s.Close()
		},
	},

	// Rust (client) opens 3 streams without data; Go (server) accepts them in order, then
	// writes on each; then Go opens a stream (broker direction) that Rust echoes.
	"open3": {
		run: func(s *yamux.Session, t *tap) error {
			var ids []uint32
			var sts []*yamux.Stream
			for i := 0; i < 3; i++ {
				st, err := acceptTimeout(s, 3*time.Second)
				if err != nil {
					return fmt.Errorf("accept %d: %v", i, err)
				}
				ids = append(ids, st.StreamID())
				sts = append(sts, st)
			}
			if fmt.Sprint(ids) != "[1 3 5]" {
				return fmt.Errorf("accepted ids %v, want [1 3 5]", ids)
			}
			if n := t.count(func(f frame) bool { return !f.out && f.typ == tData }); n != 0 {
				return fmt.Errorf("%d data frames before accept", n)
			}
			info("accepted streams %v before any data", ids)
			for _, st := range sts {
				fmt.Fprintf(st, "hello %d\n", st.StreamID())
			}
			st, err := s.OpenStream()
			if err != nil {
				return err
			}
			st.Write([]byte("from-go\n"))
			if err := expectLine(st, "from-go"); err != nil {
				return err
			}
			for _, st := range sts {
				if err := expectLine(st, fmt.Sprintf("bye %d", st.StreamID())); err != nil {
					return err
				}
			}
			return s.Close()
		},
	},

	// 64 MiB (or -n bytes) both ways at once on one stream, opened by the client side.
	"bulk": {
		run: func(s *yamux.Session, t *tap) error {
			total := *nF
			if total == 0 {
				total = 64 << 20
			}
			var st *yamux.Stream
			var err error
			if *roleF == "client" {
				st, err = s.OpenStream()
			} else {
				st, err = acceptTimeout(s, 5*time.Second)
			}
			if err != nil {
				return err
			}
			start := time.Now()
			var wg sync.WaitGroup
			var werr error
			var sent uint64
			wg.Add(1)
			go func() {
				defer wg.Done()
				sent, werr = writePattern(st, 1001, total, 100_000)
				if werr == nil {
					werr = st.Close()
				}
			}()
			n, h, rerr := readPattern(st, 2002)
			el := time.Since(start)
			wg.Wait()
			if werr != nil {
				return werr
			}
			if rerr != nil {
				return rerr
			}
			if n != total {
				return fmt.Errorf("received %d bytes, want %d", n, total)
			}
			info("go sent %d bytes sentfnv=%016x; received %d bytes recvfnv=%016x, all bytes checked; %.0f MiB/s each way", total, sent, n, h, float64(total)/(1<<20)/el.Seconds())
			time.Sleep(50 * time.Millisecond)
			return s.Close()
		},
	},

	// Rust (client) writes 8 MiB on a stream it never reads, then FIN. Go verifies.
	"writeonly": {
		run: func(s *yamux.Session, t *tap) error {
			st, err := acceptTimeout(s, 5*time.Second)
			if err != nil {
				return err
			}
			want := *nF
			if want == 0 {
				want = 8 << 20
			}
			n, h, err := readPattern(st, 3003)
			if err != nil {
				return err
			}
			if n != want {
				return fmt.Errorf("got %d bytes, want %d", n, want)
			}
			info("read %d bytes from Rust's write-only stream (window 262144), recvfnv=%016x, window updates sent by Go: %d", n, h, t.count(func(f frame) bool { return f.out && f.typ == tWindow && f.len > 0 }))
			st.Close()
			return s.Close()
		},
	},

	// Half-close both ways, each followed by > 256 KiB in the other direction.
	"halfclose": {
		run: func(s *yamux.Session, t *tap) error {
			// (a) Go FINs first, then reads 1 MiB from Rust.
			st, err := s.OpenStream()
			if err != nil {
				return err
			}
			st.Write([]byte("request"))
			st.Close()
			st.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, _, err := readPattern(st, 4004)
			if err != nil {
				return fmt.Errorf("(a) %v", err)
			}
			if n != 1<<20 {
				return fmt.Errorf("(a) got %d bytes after our FIN, want 1 MiB", n)
			}
			info("(a) Go FIN first: then received %d bytes from Rust + EOF", n)
			// (b) Rust FINs first, then Go writes 1 MiB.
			st2, err := acceptTimeout(s, 5*time.Second)
			if err != nil {
				return err
			}
			st2.SetReadDeadline(time.Now().Add(5 * time.Second))
			req, err := io.ReadAll(st2)
			if err != nil || string(req) != "request2" {
				return fmt.Errorf("(b) read %q err=%v", req, err)
			}
			if _, err := writePattern(st2, 5005, 1<<20, 50_000); err != nil {
				return fmt.Errorf("(b) write after Rust's FIN: %v", err)
			}
			st2.Close()
			info("(b) Rust FIN first: Go wrote 1 MiB after it and closed")
			ctl, err := acceptTimeout(s, 5*time.Second)
			if err != nil {
				return err
			}
			if err := expectLine(ctl, "got 1048576"); err != nil {
				return err
			}
			for i := 0; i < 200 && s.NumStreams() > 1; i++ {
				time.Sleep(5 * time.Millisecond)
			}
			if n := s.NumStreams(); n != 1 {
				return fmt.Errorf("%d streams left in the Go session, want 1 (ctl)", n)
			}
			info("both half-closed streams fully closed in Go")
			return s.Close()
		},
	},

	// A stream Rust does not read while another stream echoes and pings flow; Go's keepalive
	// (300 ms, 1 s timeout) must not kill the session.
	"slowreader": {
		config: func(c *yamux.Config) {
			c.KeepAliveInterval = 300 * time.Millisecond
			c.ConnectionWriteTimeout = time.Second
		},
		run: func(s *yamux.Session, t *tap) error {
			a, err := s.OpenStream()
			if err != nil {
				return err
			}
			b, err := s.OpenStream()
			if err != nil {
				return err
			}
			const total = 4 << 20
			var written int64
			var werr error
			done := make(chan struct{})
			go func() {
				defer close(done)
				buf := make([]byte, 1024)
				for i := range buf {
					buf[i] = 'a'
				}
				for atomic.LoadInt64(&written) < total {
					n, err := a.Write(buf)
					atomic.AddInt64(&written, int64(n))
					if err != nil {
						werr = err
						return
					}
				}
				werr = a.Close()
			}()
			for i := 0; i < 30; i++ {
				msg := fmt.Sprintf("echo %02d", i)
				b.SetWriteDeadline(time.Now().Add(2 * time.Second))
				if _, err := b.Write([]byte(msg + "\n")); err != nil {
					return fmt.Errorf("echo %d write: %v", i, err)
				}
				if err := expectLine(b, msg); err != nil {
					return fmt.Errorf("echo %d: %v", i, err)
				}
				if _, err := s.Ping(); err != nil {
					return fmt.Errorf("ping %d: %v", i, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			w := atomic.LoadInt64(&written)
			if w != 256*1024 {
				return fmt.Errorf("unread stream accepted %d bytes, want exactly the 262144 window", w)
			}
			if s.IsClosed() {
				return errClosed
			}
			info("unread stream blocked at %d bytes; 30 echoes + 30 pings ok over %v; keepalive pings answered by Rust: %d; Rust pings answered by Go: %d", w, time.Since(t0).Round(time.Millisecond), t.count(in(tPing, fACK, 0)), t.count(out(tPing, fACK, 0)))
			b.Write([]byte("read-a\n"))
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				return fmt.Errorf("writer still blocked at %d after Rust started reading", atomic.LoadInt64(&written))
			}
			if werr != nil {
				return werr
			}
			if err := expectLine(b, fmt.Sprintf("got %d", total)); err != nil {
				return err
			}
			info("after Rust started reading, the writer finished all %d bytes", total)
			return s.Close()
		},
	},

	// RST and FIN semantics (Go server, Rust client).
	"rst": {
		config: func(c *yamux.Config) { c.StreamCloseTimeout = 500 * time.Millisecond },
		run: func(s *yamux.Session, t *tap) error {
			ctl, err := acceptTimeout(s, 5*time.Second)
			if err != nil {
				return err
			}
			// (a) Rust wrote "x" and reset the stream.
			a, err := acceptTimeout(s, 5*time.Second)
			if err != nil {
				return err
			}
			a.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(a)
			if !errors.Is(err, yamux.ErrConnectionReset) {
				return fmt.Errorf("(a) after Rust's reset: read %q, err=%v; want connection reset", got, err)
			}
			info("(a) Rust reset(): Go read %q then %v", got, err)
			// (b) Rust wrote "y" and dropped the stream without shutdown: graceful FIN.
			b, err := acceptTimeout(s, 5*time.Second)
			if err != nil {
				return err
			}
			b.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err = io.ReadAll(b)
			if err != nil || string(got) != "y" {
				return fmt.Errorf("(b) after Rust's drop: read %q err=%v; want \"y\" then EOF", got, err)
			}
			info("(b) Rust dropped the stream: Go read %q then EOF", got)
			b.Close()
			// (c) Go writes "z" and closes; Rust never closes but writes > window; after
			// StreamCloseTimeout (500 ms) Go sends RST, which must fail Rust's blocked write.
			c, err := s.OpenStream()
			if err != nil {
				return err
			}
			c.Write([]byte("z"))
			c.Close()
			if _, ok := t.waitFor(3*time.Second, out(tWindow, fRST, c.StreamID())); !ok {
				return fmt.Errorf("(c) Go sent no RST")
			}
			if err := expectLine(ctl, "reset-seen"); err != nil {
				return fmt.Errorf("(c) %v", err)
			}
			info("(c) Go's close-timeout RST reached Rust's blocked writer")
			if s.IsClosed() {
				return errClosed
			}
			return s.Close()
		},
	},

	// GoAway both ways (Go server, Rust client).
	"goaway": {
		run: func(s *yamux.Session, t *tap) error {
			ctl, err := acceptTimeout(s, 5*time.Second)
			if err != nil {
				return err
			}
			if err := s.GoAway(); err != nil {
				return err
			}
			ctl.Write([]byte("goaway\n"))
			if err := expectLine(ctl, "refused"); err != nil {
				return err
			}
			info("Rust refused to open after Go's GoAway; existing stream still works")
			st, err := s.OpenStream()
			if err != nil {
				return fmt.Errorf("Go open after its own GoAway: %v", err)
			}
			st.Write([]byte("hi\n"))
			if err := expectLine(st, "hi"); err != nil {
				return err
			}
			info("Go (which sent GoAway) could still open stream %d to Rust", st.StreamID())
			if err := expectLine(ctl, "rust-goaway"); err != nil {
				return err
			}
			if _, err := s.OpenStream(); !errors.Is(err, yamux.ErrRemoteGoAway) {
				return fmt.Errorf("Go open after Rust's GoAway: err=%v, want ErrRemoteGoAway", err)
			}
			info("after Rust's GoAway, Go's OpenStream fails: %v", yamux.ErrRemoteGoAway)
			ctl.Write([]byte("bye\n"))
			if !waitClosed(s, 5*time.Second) {
				return fmt.Errorf("session not closed after Rust's close()")
			}
			if _, ok := t.find(in(tGoAway, 0, 0)); !ok {
				return fmt.Errorf("no GoAway from Rust")
			}
			info("Rust close(): Go session ended")
			return nil
		},
	},

	// -n streams (default 200) opened concurrently by Go, echoed by Rust; then the same from Rust.
	"many": {
		run: func(s *yamux.Session, t *tap) error {
			n := *nF
			if n == 0 {
				n = 200
			}
			var wg sync.WaitGroup
			errs := make(chan error, 2*n)
			start := time.Now()
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					st, err := s.OpenStream()
					if err != nil {
						errs <- err
						return
					}
					size := 1000 + (i*997)%20000
					go func() {
						writePattern(st, uint64(i), size, 4096)
						st.Close()
					}()
					st.SetReadDeadline(time.Now().Add(20 * time.Second))
					got, _, err := readPattern(st, uint64(i))
					if err != nil || got != size {
						errs <- fmt.Errorf("stream %d: echo %d of %d: %v", st.StreamID(), got, size, err)
					}
				}(i)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				return err
			}
			info("%d concurrent Go-opened streams echoed by Rust in %v", n, time.Since(start).Round(time.Millisecond))
			ctl, err := s.OpenStream()
			if err != nil {
				return err
			}
			ctl.Write([]byte("reverse\n"))
			start = time.Now()
			var ewg sync.WaitGroup
			for i := 0; i < n; i++ {
				st, err := acceptTimeout(s, 10*time.Second)
				if err != nil {
					return fmt.Errorf("accept %d: %v", i, err)
				}
				ewg.Add(1)
				go func() {
					defer ewg.Done()
					io.Copy(st, st)
					st.Close()
				}()
			}
			ewg.Wait()
			if err := expectLine(ctl, "done"); err != nil {
				return err
			}
			info("%d concurrent Rust-opened streams echoed by Go in %v", n, time.Since(start).Round(time.Millisecond))
			for i := 0; i < 400 && s.NumStreams() > 1; i++ {
				time.Sleep(5 * time.Millisecond)
			}
			if k := s.NumStreams(); k != 1 {
				return fmt.Errorf("%d streams left in Go's session, want 1", k)
			}
			info("all %d streams fully closed in Go", 2*n)
			return s.Close()
		},
	},

	// Rust opens 300 streams; Go accepts only after 1 s. Rust must stop at 256 un-ACKed SYNs
	// (hashicorp's AcceptBacklog) and continue once Go accepts.
	"backlog": {
		run: func(s *yamux.Session, t *tap) error {
			time.Sleep(time.Second)
			syns := t.count(func(f frame) bool { return !f.out && f.flags&fSYN != 0 })
			if syns != 256 {
				return fmt.Errorf("%d SYNs before any accept, want 256", syns)
			}
			seen := map[uint32]bool{}
			for i := 0; i < 300; i++ {
				st, err := acceptTimeout(s, 5*time.Second)
				if err != nil {
					return fmt.Errorf("accept %d: %v", i, err)
				}
				var b [4]byte
				st.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(st, b[:]); err != nil {
					return err
				}
				seen[binary.LittleEndian.Uint32(b[:])] = true
				st.Close()
			}
			var ids []int
			for k := range seen {
				ids = append(ids, int(k))
			}
			sort.Ints(ids)
			if len(ids) != 300 || ids[0] != 0 || ids[299] != 299 {
				return fmt.Errorf("indices %v", ids)
			}
			info("Rust sent exactly 256 SYNs while Go did not accept, then all 300 streams arrived")
			return s.Close()
		},
	},

	// Rust closes the session: Go sees GoAway(normal), then EOF.
	"close-by-rust": {
		run: func(s *yamux.Session, t *tap) error {
			st, err := acceptTimeout(s, 5*time.Second)
			if err != nil {
				return err
			}
			if err := expectLine(st, "x"); err != nil {
				return err
			}
			st.Write([]byte("got-x\n"))
			if !waitClosed(s, 5*time.Second) {
				return fmt.Errorf("session not closed")
			}
			g, ok := t.find(in(tGoAway, 0, 0))
			if !ok || g.len != 0 {
				return fmt.Errorf("no GoAway(normal) from Rust")
			}
			info("Rust close(): GoAway(0) then EOF; Go session closed")
			return nil
		},
	},

	// Go (server) never accepts, so never ACKs: Rust's stream_open_timeout (1 s here) must
	// close the session, as hashicorp does after its StreamOpenTimeout.
	"noaccept": {
		run: func(s *yamux.Session, t *tap) error {
			syn, ok := t.waitFor(5*time.Second, in(tWindow, fSYN, 1))
			if !ok {
				return fmt.Errorf("no SYN")
			}
			if !waitClosed(s, 10*time.Second) {
				return fmt.Errorf("session still open 10s after an un-ACKed SYN")
			}
			g, ok := t.find(in(tGoAway, 0, 0))
			if !ok {
				return fmt.Errorf("no GoAway before the close")
			}
			info("un-ACKed stream: Rust sent GoAway(%d) %.0fms after its SYN and closed", g.len, ms(g.at.Sub(syn.at)))
			return nil
		},
	},

	// Go closes the session under an open stream.
	"close-by-go": {
		run: func(s *yamux.Session, t *tap) error {
			st, err := s.OpenStream()
			if err != nil {
				return err
			}
			st.Write([]byte("x\n"))
			if err := expectLine(st, "x"); err != nil {
				return err
			}
			return s.Close()
		},
	},
}
