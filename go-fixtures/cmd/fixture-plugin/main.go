// Command fixture-plugin is the Go side of plugwire's interop matrix: a go-plugin v1.8.0 plugin
// whose behaviour is chosen by its first argument (the mode), with the same mode names as the
// Rust fixture plugin.
package main

import (
	"math"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/golang/protobuf/ptypes/empty"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	counterproto "github.com/hashicorp/go-plugin/examples/bidirectional/proto"
	kvproto "github.com/hashicorp/go-plugin/examples/grpc/proto"
	grpctest "github.com/hashicorp/go-plugin/test/grpc"
	"google.golang.org/grpc"

	"github.com/plugwire/plugwire/go-fixtures/internal/fixture"
)

func main() {
	mode := "serve"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: os.Stderr, JSONFormat: true})
	kv := &kvServer{values: map[string][]byte{}}
	set := func() plugin.PluginSet {
		return plugin.PluginSet{fixture.PluginName: &fixture.Plugin{Make: func(b *plugin.GRPCBroker) fixture.Servers {
			return fixture.Servers{
				Test:    &testServer{broker: b, logger: logger},
				KV:      kv,
				Counter: &counterServer{broker: b, values: map[string]int64{}},
			}
		}}}
	}
	config := &plugin.ServeConfig{
		HandshakeConfig: fixture.Handshake,
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          logger,
	}
	netrpcSet := func() plugin.PluginSet {
		return plugin.PluginSet{fixture.PluginName: &fixture.NetRPCPlugin{Logger: logger}}
	}
	switch mode {
	case "serve", "crash":
		config.VersionedPlugins = map[int]plugin.PluginSet{1: set()}
	case "serve-big":
		// For the benchmark's 8 and 64 MiB requests: grpc-go servers (go-plugin's
		// DefaultGRPCServer included) refuse requests over 4 MiB unless raised, as Terraform's
		// plugin servers do.
		config.VersionedPlugins = map[int]plugin.PluginSet{1: set()}
		config.GRPCServer = func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(math.MaxInt32))...)
		}
	case "netrpc":
		config.VersionedPlugins = map[int]plugin.PluginSet{1: netrpcSet()}
	case "netrpc-manual-tls":
		config.VersionedPlugins = map[int]plugin.PluginSet{1: netrpcSet()}
		config.TLSProvider = func() (*tls.Config, error) { return fixture.TLSConfig("plugin") }
	case "negotiated":
		// As go-plugin's examples/negotiated: version 2 over netrpc, version 3 over gRPC.
		config.VersionedPlugins = map[int]plugin.PluginSet{2: netrpcSet(), 3: set()}
	case "manual-tls":
		config.VersionedPlugins = map[int]plugin.PluginSet{1: set()}
		config.TLSProvider = func() (*tls.Config, error) { return fixture.TLSConfig("plugin") }
	case "versioned":
		config.VersionedPlugins = map[int]plugin.PluginSet{2: set(), 3: set(), 5: set()}
	case "mismatch":
		config.VersionedPlugins = map[int]plugin.PluginSet{2: set()}
	case "stdin":
		data, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
		if err != nil {
			fmt.Fprintf(os.Stderr, "reading stdin: %v\n", err)
			os.Exit(2)
		}
		kv.values["stdin"] = data
		config.VersionedPlugins = map[int]plugin.PluginSet{1: set()}
	case "debug", "netrpc-debug":
		// go-plugin's test mode, as a debuggable provider uses it: print the reattach
		// configuration in Terraform's JSON form, serve until SIGINT/SIGTERM.
		config.VersionedPlugins = map[int]plugin.PluginSet{1: set()}
		if mode == "netrpc-debug" {
			config.VersionedPlugins = map[int]plugin.PluginSet{1: netrpcSet()}
		}
		ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer cancel()
		reattach := make(chan *plugin.ReattachConfig, 1)
		closed := make(chan struct{})
		config.Test = &plugin.ServeTestConfig{Context: ctx, ReattachConfigCh: reattach, CloseCh: closed}
		go func() {
			r := <-reattach
			data, _ := json.Marshal(map[string]interface{}{"fixture": map[string]interface{}{
				"Protocol":        r.Protocol,
				"ProtocolVersion": r.ProtocolVersion,
				"Pid":             r.Pid,
				"Test":            r.Test,
				"Addr":            map[string]string{"Network": r.Addr.Network(), "String": r.Addr.String()},
			}})
			fmt.Println(string(data))
		}()
		plugin.Serve(config)
		<-closed
		return
	case "never":
		// Never print a handshake line; the host's start timeout must fire.
		time.Sleep(time.Minute)
		os.Exit(3)
	default:
		fmt.Fprintf(os.Stderr, "fixture-plugin: unknown mode %q\n", mode)
		os.Exit(2)
	}
	plugin.Serve(config)
}

type kvServer struct {
	kvproto.UnimplementedKVServer
	mu     sync.Mutex
	values map[string][]byte
}

func (s *kvServer) Get(_ context.Context, req *kvproto.GetRequest) (*kvproto.GetResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.values[req.Key]
	if !ok {
		return nil, fmt.Errorf("no value for key %q", req.Key)
	}
	return &kvproto.GetResponse{Value: v}, nil
}

func (s *kvServer) Put(_ context.Context, req *kvproto.PutRequest) (*kvproto.Empty, error) {
	if req.Key == "flood" {
		// "<stdout bytes>,<stderr bytes>" of the flood pattern, written in the background.
		var out, errBytes int64
		if _, err := fmt.Sscanf(string(req.Value), "%d,%d", &out, &errBytes); err != nil {
			return nil, fmt.Errorf("flood wants \"<stdout>,<stderr>\": %w", err)
		}
		go writeFlood(os.Stdout, out)
		go writeFlood(os.Stderr, errBytes)
		return &kvproto.Empty{}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.values[req.Key] = req.Value
	return &kvproto.Empty{}, nil
}

type testServer struct {
	grpctest.UnimplementedTestServer
	broker *plugin.GRPCBroker
	logger hclog.Logger
}

func (s *testServer) Double(_ context.Context, req *grpctest.TestRequest) (*grpctest.TestResponse, error) {
	return &grpctest.TestResponse{Output: req.Input * 2}, nil
}

func (s *testServer) PrintKV(_ context.Context, req *grpctest.PrintKVRequest) (*grpctest.PrintKVResponse, error) {
	var v interface{}
	switch rv := req.Value.(type) {
	case *grpctest.PrintKVRequest_ValueString:
		v = rv.ValueString
	case *grpctest.PrintKVRequest_ValueInt:
		v = rv.ValueInt
	default:
		return nil, errors.New("PrintKV: no value")
	}
	s.logger.Info("PrintKV called", req.Key, v)
	return &grpctest.PrintKVResponse{}, nil
}

// Bidirectional is go-plugin's own broker test: dial the host's PingPong, then serve ours.
func (s *testServer) Bidirectional(ctx context.Context, req *grpctest.BidirectionalRequest) (*grpctest.BidirectionalResponse, error) {
	conn, err := s.broker.Dial(req.Id)
	if err != nil {
		return nil, fmt.Errorf("server dial error: %w", err)
	}
	defer conn.Close()
	resp, err := grpctest.NewPingPongClient(conn).Ping(ctx, &grpctest.PingRequest{})
	if err != nil {
		return nil, fmt.Errorf("server Ping() error: %w", err)
	}
	if resp.Msg != "pong" {
		return nil, errors.New("server Bad PingPong")
	}
	next := s.broker.NextId()
	go s.broker.AcceptAndServe(next, func(opts []grpc.ServerOption) *grpc.Server {
		srv := grpc.NewServer(opts...)
		grpctest.RegisterPingPongServer(srv, fixture.PingPong{})
		return srv
	})
	return &grpctest.BidirectionalResponse{Id: next}, nil
}

func (s *testServer) Stream(stream grpctest.Test_StreamServer) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&grpctest.TestResponse{Output: req.Input}); err != nil {
			return err
		}
	}
}

func (s *testServer) PrintStdio(_ context.Context, req *grpctest.PrintStdioRequest) (*empty.Empty, error) {
	if len(req.Stdout) > 0 {
		_, _ = os.Stdout.Write(req.Stdout)
	}
	if len(req.Stderr) > 0 {
		_, _ = os.Stderr.Write(req.Stderr)
	}
	return &empty.Empty{}, nil
}

// Panic crashes the whole process, as a panic in a Go gRPC handler does.
func (s *testServer) Panic(_ context.Context, req *grpctest.PanicRequest) (*empty.Empty, error) {
	panic(req.Message)
}

// counterServer is the bidirectional example's Counter, in memory: Put asks the host's AddHelper
// (dialled through the broker) to add.
type counterServer struct {
	counterproto.UnimplementedCounterServer
	broker *plugin.GRPCBroker
	mu     sync.Mutex
	values map[string]int64
}

func (s *counterServer) Get(_ context.Context, req *counterproto.GetRequest) (*counterproto.GetResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &counterproto.GetResponse{Value: s.values[req.Key]}, nil
}

func (s *counterServer) Put(ctx context.Context, req *counterproto.PutRequest) (*counterproto.Empty, error) {
	conn, err := s.broker.Dial(req.AddServer)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	s.mu.Lock()
	current := s.values[req.Key]
	s.mu.Unlock()
	sum, err := counterproto.NewAddHelperClient(conn).Sum(ctx, &counterproto.SumRequest{A: current, B: req.Value})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.values[req.Key] = sum.R
	s.mu.Unlock()
	return &counterproto.Empty{}, nil
}

// writeFlood writes n bytes of the flood pattern (offset % 251) to w.
func writeFlood(w io.Writer, n int64) {
	block := make([]byte, 251*256)
	for i := range block {
		block[i] = byte(i % 251)
	}
	for written := int64(0); written < n; {
		start := written % 251
		chunk := int64(len(block)) - start
		if chunk > n-written {
			chunk = n - written
		}
		if _, err := w.Write(block[start : start+chunk]); err != nil {
			return
		}
		written += chunk
	}
}
