// Command bare-plugin is a go-plugin peer written without go-plugin, as go-plugin's Python
// example plugin is: it checks the cookie, prints its own handshake line and serves gRPC health
// (service "plugin" SERVING), and no broker or stdio service. Its mode says how it answers
// plugin.GRPCController/Shutdown:
//
//	hang   accepts the call and never answers (the plugin never stops by itself)
//	none   does not serve the controller at all (Unimplemented, as a minimal peer)
//	debug  like hang, started by hand: prints a reattach configuration instead of the line
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/signal"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/emptypb"
)

// controllerDesc is plugin.GRPCController with a Shutdown that waits until the caller gives up.
var controllerDesc = grpc.ServiceDesc{
	ServiceName: "plugin.GRPCController",
	HandlerType: (*interface{})(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Shutdown",
		Handler: func(_ interface{}, ctx context.Context, dec func(interface{}) error, _ grpc.UnaryServerInterceptor) (interface{}, error) {
			if err := dec(&emptypb.Empty{}); err != nil {
				return nil, err
			}
			<-ctx.Done()
			return nil, ctx.Err()
		},
	}},
	Metadata: "plugin/grpc_controller.proto",
}

func main() {
	mode := "hang"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	if mode != "debug" && os.Getenv("TEST_MAGIC_COOKIE") != "test" {
		fmt.Fprint(os.Stderr, "This binary is a plugin. These are not meant to be executed directly.\n")
		os.Exit(1)
	}
	f, err := os.CreateTemp("", "plugin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	path := f.Name()
	_ = f.Close()
	_ = os.Remove(path)
	listener, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	server := grpc.NewServer()
	status := health.NewServer()
	status.SetServingStatus("plugin", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(server, status)
	if mode != "none" {
		server.RegisterService(&controllerDesc, struct{}{})
	}
	signal.Ignore(os.Interrupt)
	if mode == "debug" {
		reattach, _ := json.Marshal(map[string]interface{}{"bare": map[string]interface{}{
			"Protocol": "grpc", "ProtocolVersion": 1, "Pid": os.Getpid(), "Test": true,
			"Addr": map[string]string{"Network": "unix", "String": path},
		}})
		fmt.Println(string(reattach))
	} else {
		fmt.Printf("1|1|unix|%s|grpc|\n", path)
	}
	_ = os.Stdout.Sync()
	_ = server.Serve(listener)
}
