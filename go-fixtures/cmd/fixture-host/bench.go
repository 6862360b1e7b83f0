package main

// The benchmark workloads (scenario "bench:<name>"), the same as the Rust fixture host's. Each
// prints one `result=<json>` line of raw measurements; the driver (benches/) computes the
// statistics and the ratios.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	kvproto "github.com/hashicorp/go-plugin/examples/grpc/proto"
	grpctest "github.com/hashicorp/go-plugin/test/grpc"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/plugwire/plugwire/go-fixtures/internal/fixture"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func since(t time.Time) int64 { return time.Since(t).Nanoseconds() }

func result(values map[string]interface{}) { report("result", values) }

// started launches a plugin and returns its client, failing the fixture otherwise.
func started(o options) (*host, *fixture.Client) {
	h := launch(o)
	rpc, err := h.client.Client()
	if err != nil {
		fail("start: %v", err)
	}
	raw, err := rpc.Dispense(fixture.PluginName)
	if err != nil {
		fail("dispense: %v", err)
	}
	return h, raw.(*fixture.Client)
}

// procKB reads a "<field>: N kB" line from /proc/<pid>/<file>.
func procKB(pid int, file, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		return -1
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		if rest, ok := strings.CutPrefix(scanner.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return n
		}
	}
	return -1
}

func runBench(name string, o options) {
	ctx := context.Background()
	o.quiet = true
	n := envInt("BENCH_N", 20)
	switch name {
	case "cold":
		var cold, kill []int64
		for i := 0; i < n; i++ {
			t0 := time.Now()
			h, c := started(o)
			if _, err := c.Test.Double(ctx, &grpctest.TestRequest{Input: 1}); err != nil {
				fail("double: %v", err)
			}
			cold = append(cold, since(t0))
			t1 := time.Now()
			h.client.Kill()
			kill = append(kill, since(t1))
		}
		result(map[string]interface{}{"cold_ns": cold, "kill_ns": kill})

	case "unary":
		h, c := started(o)
		value := make([]byte, 16)
		if _, err := c.KV.Put(ctx, &kvproto.PutRequest{Key: "k", Value: value}); err != nil {
			fail("put: %v", err)
		}
		for i := 0; i < n/10+100; i++ {
			_, _ = c.KV.Get(ctx, &kvproto.GetRequest{Key: "k"})
		}
		lat := make([]int64, 0, n)
		for i := 0; i < n; i++ {
			t0 := time.Now()
			if _, err := c.KV.Get(ctx, &kvproto.GetRequest{Key: "k"}); err != nil {
				fail("get: %v", err)
			}
			lat = append(lat, since(t0))
		}
		pid := h.client.ReattachConfig().Pid
		result(map[string]interface{}{"lat_ns": lat, "idle_rss_kb": procKB(pid, "status", "VmRSS")})
		h.client.Kill()

	case "concurrent":
		h, c := started(o)
		if _, err := c.KV.Put(ctx, &kvproto.PutRequest{Key: "k", Value: make([]byte, 16)}); err != nil {
			fail("put: %v", err)
		}
		duration := time.Duration(envInt("BENCH_MILLIS", 2000)) * time.Millisecond
		var calls atomic.Int64
		var wg sync.WaitGroup
		deadline := time.Now().Add(duration)
		t0 := time.Now()
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					if _, err := c.KV.Get(ctx, &kvproto.GetRequest{Key: "k"}); err == nil {
						calls.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		result(map[string]interface{}{"calls": calls.Load(), "elapsed_ns": since(t0)})
		h.client.Kill()

	case "bulk":
		h, c := started(o)
		size := envInt("BENCH_SIZE", 1<<20)
		value := make([]byte, size)
		t0 := time.Now()
		for i := 0; i < n; i++ {
			if _, err := c.KV.Put(ctx, &kvproto.PutRequest{Key: "big", Value: value}); err != nil {
				fail("put: %v", err)
			}
		}
		up := since(t0)
		t1 := time.Now()
		for i := 0; i < n; i++ {
			if _, err := c.KV.Get(ctx, &kvproto.GetRequest{Key: "big"}); err != nil {
				fail("get: %v", err)
			}
		}
		result(map[string]interface{}{"bytes": int64(n) * int64(size), "size": size, "up_ns": up, "down_ns": since(t1)})
		h.client.Kill()

	case "stream":
		h, c := started(o)
		total := envInt("BENCH_BYTES", 256<<20)
		t0 := time.Now()
		stream, err := c.Conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, fixture.BenchDownload)
		if err != nil {
			fail("download: %v", err)
		}
		if err := stream.SendMsg(&wrapperspb.StringValue{Value: fmt.Sprintf("%d,%d", 64<<10, total)}); err != nil {
			fail("download: %v", err)
		}
		_ = stream.CloseSend()
		received := 0
		for {
			msg := &wrapperspb.BytesValue{}
			if err := stream.RecvMsg(msg); err == io.EOF {
				break
			} else if err != nil {
				fail("download: %v", err)
			}
			received += len(msg.Value)
		}
		result(map[string]interface{}{"bytes": received, "elapsed_ns": since(t0)})
		h.client.Kill()

	case "netrpc-cold":
		o.netrpc = true
		var cold, kill []int64
		for i := 0; i < n; i++ {
			t0 := time.Now()
			h := launch(o)
			c, err := h.dispenseNetRPC(fixture.PluginName)
			if err != nil {
				fail("dispense: %v", err)
			}
			var doubled int
			if err := c.RPC.Call("Plugin.Double", 1, &doubled); err != nil {
				fail("double: %v", err)
			}
			cold = append(cold, since(t0))
			t1 := time.Now()
			h.client.Kill()
			kill = append(kill, since(t1))
		}
		result(map[string]interface{}{"cold_ns": cold, "kill_ns": kill})

	case "netrpc-unary":
		o.netrpc = true
		h := launch(o)
		c, err := h.dispenseNetRPC(fixture.PluginName)
		if err != nil {
			fail("dispense: %v", err)
		}
		put := map[string]interface{}{"key": "k", "value": make([]byte, 16)}
		if err := c.RPC.Call("Plugin.Put", put, new(interface{})); err != nil {
			fail("put: %v", err)
		}
		var got []byte
		for i := 0; i < n/10+100; i++ {
			_ = c.RPC.Call("Plugin.Get", "k", &got)
		}
		lat := make([]int64, 0, n)
		for i := 0; i < n; i++ {
			t0 := time.Now()
			if err := c.RPC.Call("Plugin.Get", "k", &got); err != nil {
				fail("get: %v", err)
			}
			lat = append(lat, since(t0))
		}
		pid := h.client.ReattachConfig().Pid
		result(map[string]interface{}{"lat_ns": lat, "idle_rss_kb": procKB(pid, "status", "VmRSS")})
		h.client.Kill()

	case "broker":
		h, c := started(o)
		if err := counterPut(ctx, c, "b", 1); err != nil {
			fail("warm-up: %v", err)
		}
		lat := make([]int64, 0, n)
		for i := 0; i < n; i++ {
			t0 := time.Now()
			if err := counterPut(ctx, c, "b", 1); err != nil {
				fail("put: %v", err)
			}
			lat = append(lat, since(t0))
		}
		result(map[string]interface{}{"lat_ns": lat})
		h.client.Kill()

	case "stdio":
		total := int64(envInt("BENCH_BYTES", 256<<20))
		o.stdout, o.stderr = newCollector(), newCollector()
		h, c := started(o)
		t0 := time.Now()
		if _, err := c.KV.Put(ctx, &kvproto.PutRequest{Key: "flood", Value: []byte(fmt.Sprintf("%d,0", total))}); err != nil {
			fail("flood: %v", err)
		}
		got := o.stdout.waitFor(total, 120*time.Second)
		result(map[string]interface{}{"bytes": got, "elapsed_ns": since(t0), "intact": o.stdout.isIntact()})
		h.client.Kill()

	case "fleet":
		count := envInt("BENCH_FLEET", 50)
		hosts := make([]*host, count)
		var wg sync.WaitGroup
		t0 := time.Now()
		for i := range hosts {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				h, c := started(o)
				if _, err := c.Test.Double(ctx, &grpctest.TestRequest{Input: 1}); err != nil {
					fail("double: %v", err)
				}
				hosts[i] = h
			}(i)
		}
		wg.Wait()
		elapsed := since(t0)
		pss := make([]int64, 0, count)
		for _, h := range hosts {
			pss = append(pss, procKB(h.client.ReattachConfig().Pid, "smaps_rollup", "Pss"))
		}
		for _, h := range hosts {
			wg.Add(1)
			go func(h *host) { defer wg.Done(); h.client.Kill() }(h)
		}
		wg.Wait()
		result(map[string]interface{}{"elapsed_ns": elapsed, "pss_kb": pss})

	case "crypto":
		var certgen, handshake []int64
		for i := 0; i < n; i++ {
			t0 := time.Now()
			a := newCert()
			certgen = append(certgen, since(t0))
			b := newCert()
			t1 := time.Now()
			mutualHandshake(a, b)
			handshake = append(handshake, since(t1))
		}
		result(map[string]interface{}{"certgen_ns": certgen, "handshake_ns": handshake})

	default:
		fail("unknown benchmark %q", name)
	}
}

// newCert makes a certificate like go-plugin's AutoMTLS one: self-signed ECDSA P-521, CA,
// SAN localhost, client and server auth, 30 years.
func newCert() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		fail("key: %v", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		fail("serial: %v", err)
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"HashiCorp"}},
		DNSNames:              []string{"localhost"},
		NotBefore:             time.Now().Add(-30 * time.Second),
		NotAfter:              time.Now().Add(262980 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		fail("cert: %v", err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// socketPair returns two connected unix sockets (kernel-buffered, unlike net.Pipe).
func socketPair() (net.Conn, net.Conn) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		fail("socketpair: %v", err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			fail("socketpair: %v", err)
		}
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

// mutualHandshake runs one TLS handshake between a (client) and b (server), each trusting only
// the other, over a socket pair, as AutoMTLS peers do.
func mutualHandshake(a, b tls.Certificate) {
	pool := func(c tls.Certificate) *x509.CertPool {
		p := x509.NewCertPool()
		p.AddCert(c.Leaf)
		return p
	}
	clientConn, serverConn := socketPair()
	client := tls.Client(clientConn, &tls.Config{Certificates: []tls.Certificate{a}, RootCAs: pool(b), ServerName: "localhost"})
	server := tls.Server(serverConn, &tls.Config{Certificates: []tls.Certificate{b}, ClientCAs: pool(a), ClientAuth: tls.RequireAndVerifyClientCert})
	done := make(chan error, 1)
	go func() { done <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		fail("client handshake: %v", err)
	}
	if err := <-done; err != nil {
		fail("server handshake: %v", err)
	}
	_ = client.Close()
	_ = server.Close()
}
