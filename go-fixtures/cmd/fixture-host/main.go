// Command fixture-host is the Go side of plugwire's interop matrix: a go-plugin v1.8.0 host that
// runs one named scenario against the plugin given by -plugin and prints what it observed as
// `key=<json>` lines on stdout. It judges nothing: the Rust test harness compares the
// observations of the Go and Rust hosts against the same expectations. Exit status 0 means the
// scenario ran to the end; 1 means the fixture itself could not run it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	kvproto "github.com/hashicorp/go-plugin/examples/grpc/proto"
	grpctest "github.com/hashicorp/go-plugin/test/grpc"

	"github.com/plugwire/plugwire/go-fixtures/internal/fixture"
)

// syncBuffer collects the host's own log lines so scenarios can look for go-plugin's messages.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func report(key string, value interface{}) {
	data, err := json.Marshal(value)
	if err != nil {
		data, _ = json.Marshal(fmt.Sprint(value))
	}
	fmt.Printf("%s=%s\n", key, data)
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "fixture-host: "+format+"\n", args...)
	os.Exit(1)
}

type options struct {
	plugin   string
	mode     string
	versions []int
	cookie   plugin.HandshakeConfig
	timeout  time.Duration
	autoMTLS bool
	tls      bool
}

type host struct {
	client *plugin.Client
	logs   *syncBuffer
	stderr *syncBuffer
}

func launch(o options) *host {
	set := plugin.PluginSet{fixture.PluginName: &fixture.Plugin{}}
	versioned := map[int]plugin.PluginSet{}
	for _, v := range o.versions {
		versioned[v] = set
	}
	logs := &syncBuffer{}
	stderr := &syncBuffer{}
	config := &plugin.ClientConfig{
		HandshakeConfig:  o.cookie,
		VersionedPlugins: versioned,
		Cmd:              exec.Command(o.plugin, o.mode),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:   "plugin",
			Level:  hclog.Trace,
			Output: io.MultiWriter(os.Stderr, logs),
		}),
		Stderr: stderr,
	}
	if o.timeout > 0 {
		config.StartTimeout = o.timeout
	}
	config.AutoMTLS = o.autoMTLS
	if o.tls {
		tlsConfig, err := fixture.TLSConfig("host")
		if err != nil {
			fail("manual TLS: %v", err)
		}
		config.TLSConfig = tlsConfig
	}
	return &host{client: plugin.NewClient(config), logs: logs, stderr: stderr}
}

// dispense starts the plugin and returns the fixture client, reporting a start error.
func (h *host) dispense() (*fixture.Client, bool) {
	rpc, err := h.client.Client()
	if err != nil {
		report("error", err.Error())
		return nil, false
	}
	raw, err := rpc.Dispense(fixture.PluginName)
	if err != nil {
		fail("dispense: %v", err)
	}
	report("version", h.client.NegotiatedVersion())
	return raw.(*fixture.Client), true
}

// kill stops the plugin and reports whether it went gracefully and how it exited.
func (h *host) kill() {
	h.client.Kill()
	logs := h.logs.String()
	report("graceful", !strings.Contains(logs, "plugin failed to exit gracefully"))
	report("exit_ok", strings.Contains(logs, "plugin process exited") && !strings.Contains(logs, "[ERROR] plugin: plugin process exited"))
	report("exited", h.client.Exited())
}

// afterFailedStart reports what a failed start left behind.
func (h *host) afterFailedStart() {
	h.client.Kill()
	report("exited", h.client.Exited())
	logs := h.logs.String()
	if i := strings.Index(logs, "exit status "); i >= 0 {
		var code int
		if _, err := fmt.Sscanf(logs[i:], "exit status %d", &code); err == nil {
			report("exit_status", code)
		}
	}
	report("stderr", h.stderr.String())
}

func main() {
	pluginPath := flag.String("plugin", "", "plugin executable")
	mode := flag.String("mode", "serve", "plugin mode (its first argument)")
	scenario := flag.String("scenario", "", "scenario name")
	autoMTLS := flag.Bool("mtls", false, "AutoMTLS")
	manualTLS := flag.Bool("tls", false, "manual TLS from $FIXTURE_TLS_DIR")
	flag.Parse()
	if *pluginPath == "" || *scenario == "" {
		fail("usage: fixture-host -plugin PATH [-mode MODE] -scenario NAME")
	}
	o := options{plugin: *pluginPath, mode: *mode, versions: []int{1}, cookie: fixture.Handshake,
		autoMTLS: *autoMTLS, tls: *manualTLS}
	ctx := context.Background()

	switch *scenario {
	case "kv":
		h := launch(o)
		c, ok := h.dispense()
		if !ok {
			os.Exit(1)
		}
		if _, err := c.KV.Put(ctx, &kvproto.PutRequest{Key: "hello", Value: []byte("world")}); err != nil {
			fail("put: %v", err)
		}
		got, err := c.KV.Get(ctx, &kvproto.GetRequest{Key: "hello"})
		if err != nil {
			fail("get: %v", err)
		}
		report("get", string(got.Value))
		d, err := c.Test.Double(ctx, &grpctest.TestRequest{Input: 21})
		if err != nil {
			fail("double: %v", err)
		}
		report("double", d.Output)
		stream(ctx, c)
		h.kill()

	case "negotiate":
		o.versions = []int{1, 3, 4}
		h := launch(o)
		c, ok := h.dispense()
		if !ok {
			os.Exit(1)
		}
		d, err := c.Test.Double(ctx, &grpctest.TestRequest{Input: 4})
		if err != nil {
			fail("double: %v", err)
		}
		report("double", d.Output)
		h.kill()

	case "mismatch", "cookie-wrong", "cookie-missing", "start-timeout":
		switch *scenario {
		case "cookie-wrong":
			o.cookie.MagicCookieValue = "wrong"
		case "cookie-missing":
			o.cookie.MagicCookieKey = "PLUGWIRE_OTHER_COOKIE"
		case "start-timeout":
			o.timeout = 500 * time.Millisecond
		}
		h := launch(o)
		start := time.Now()
		if _, ok := h.dispense(); ok {
			report("error", nil)
		}
		report("elapsed_ms", time.Since(start).Milliseconds())
		h.afterFailedStart()

	case "ping":
		h := launch(o)
		if _, ok := h.dispense(); !ok {
			os.Exit(1)
		}
		rpc, _ := h.client.Client()
		report("ping", errText(rpc.Ping()))
		h.kill()
		report("ping_after_kill", errText(rpc.Ping()))

	case "crash":
		h := launch(o)
		c, ok := h.dispense()
		if !ok {
			os.Exit(1)
		}
		start := time.Now()
		_, err := c.Test.Panic(ctx, &grpctest.PanicRequest{Message: "fixture crash"})
		report("call", errText(err))
		select {
		case <-c.Done.Done():
			report("exit_observed", true)
		case <-time.After(10 * time.Second):
			report("exit_observed", false)
		}
		report("elapsed_ms", time.Since(start).Milliseconds())
		h.client.Kill()
		report("exited", h.client.Exited())

	case "stdin":
		h := launch(o)
		c, ok := h.dispense()
		if !ok {
			os.Exit(1)
		}
		got, err := c.KV.Get(ctx, &kvproto.GetRequest{Key: "stdin"})
		if err != nil {
			fail("get stdin: %v", err)
		}
		report("stdin", string(got.Value))
		h.kill()

	case "tcp":
		h := launch(o)
		c, ok := h.dispense()
		if !ok {
			os.Exit(1)
		}
		report("network", h.client.ReattachConfig().Addr.Network())
		d, err := c.Test.Double(ctx, &grpctest.TestRequest{Input: 21})
		if err != nil {
			fail("double: %v", err)
		}
		report("double", d.Output)
		h.kill()

	case "refused":
		// The plugin must not be reachable: the start or the first call fails.
		h := launch(o)
		rpc, err := h.client.Client()
		if err != nil {
			report("refused", true)
			report("error", err.Error())
		} else {
			err := rpc.Ping()
			report("refused", err != nil)
			report("error", errText(err))
		}
		h.client.Kill()

	default:
		fail("unknown scenario %q", *scenario)
	}
}

// stream runs go-plugin's streaming test: 21..25 echoed back in order.
func stream(ctx context.Context, c *fixture.Client) {
	s, err := c.Test.Stream(ctx)
	if err != nil {
		fail("stream: %v", err)
	}
	var got []int32
	for i := int32(21); i < 26; i++ {
		if err := s.Send(&grpctest.TestRequest{Input: i}); err != nil {
			fail("stream send: %v", err)
		}
		r, err := s.Recv()
		if err != nil {
			fail("stream recv: %v", err)
		}
		got = append(got, r.Output)
	}
	_ = s.CloseSend()
	report("stream", got)
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return "error: " + err.Error()
}
