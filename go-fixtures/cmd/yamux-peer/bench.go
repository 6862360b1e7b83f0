package main

import (
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/hashicorp/yamux"
)

// Bench protocol (shared with the Rust bench example): the client opens one stream per run.
//
//	thru-up    client writes -n bytes and FINs; server reads to EOF, replies 1 byte
//	thru-down  client writes 1 byte; server writes -n bytes and FINs
//	rtt        client sends -msg bytes, server echoes them; -n round trips
func init() {
	modes["bench-server"] = mode{run: benchServer}
	modes["bench-client"] = mode{run: benchClient}
}

func benchServer(s *yamux.Session, t *tap) error {
	for {
		st, err := s.AcceptStream()
		if err != nil {
			return nil // client closed the session
		}
		go func(st *yamux.Stream) {
			defer st.Close()
			switch *benchF {
			case "thru-up":
				io.Copy(io.Discard, st)
				st.Write([]byte{1})
			case "thru-down":
				one := make([]byte, 1)
				io.ReadFull(st, one)
				buf := make([]byte, 64<<10)
				for left := *nF; left > 0; {
					n := len(buf)
					if left < n {
						n = left
					}
					if _, err := st.Write(buf[:n]); err != nil {
						return
					}
					left -= n
				}
			default:
				io.Copy(st, st)
			}
		}(st)
	}
}

func benchClient(s *yamux.Session, t *tap) error {
	st, err := s.OpenStream()
	if err != nil {
		return err
	}
	switch *benchF {
	case "thru-up":
		buf := make([]byte, 64<<10)
		start := time.Now()
		for left := *nF; left > 0; {
			n := len(buf)
			if left < n {
				n = left
			}
			if _, err := st.Write(buf[:n]); err != nil {
				return err
			}
			left -= n
		}
		st.Close()
		one := make([]byte, 1)
		if _, err := io.ReadFull(st, one); err != nil {
			return err
		}
		el := time.Since(start)
		fmt.Printf("BENCH thru-up bytes=%d secs=%.3f MiB/s=%.0f\n", *nF, el.Seconds(), float64(*nF)/(1<<20)/el.Seconds())
	case "thru-down":
		start := time.Now()
		st.Write([]byte{1})
		n, err := io.Copy(io.Discard, st)
		if err != nil {
			return err
		}
		el := time.Since(start)
		if int(n) != *nF {
			return fmt.Errorf("got %d bytes", n)
		}
		fmt.Printf("BENCH thru-down bytes=%d secs=%.3f MiB/s=%.0f\n", n, el.Seconds(), float64(n)/(1<<20)/el.Seconds())
	default:
		msg := make([]byte, *msgF)
		back := make([]byte, *msgF)
		lat := make([]time.Duration, 0, *nF)
		for i := 0; i < 200; i++ { // warm-up
			st.Write(msg)
			io.ReadFull(st, back)
		}
		start := time.Now()
		for i := 0; i < *nF; i++ {
			t := time.Now()
			if _, err := st.Write(msg); err != nil {
				return err
			}
			if _, err := io.ReadFull(st, back); err != nil {
				return err
			}
			lat = append(lat, time.Since(t))
		}
		el := time.Since(start)
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		fmt.Printf("BENCH rtt msg=%d n=%d mean_us=%.1f p50_us=%.1f p99_us=%.1f\n", *msgF, *nF,
			float64(el.Microseconds())/float64(*nF), us(lat[len(lat)/2]), us(lat[len(lat)*99/100]))
		st.Close()
	}
	return s.Close()
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
