//! What the plugin serves: go-plugin's services (health, reflection, broker, controller, stdio)
//! and the application's.

use std::sync::Arc;

use plugwire_runtime::broker::{Broker, BrokerLink};
use plugwire_runtime::pb::grpc_broker_server::GrpcBrokerServer;
use plugwire_runtime::pb::grpc_controller_server::GrpcControllerServer;
use plugwire_runtime::pb::grpc_stdio_server::GrpcStdioServer;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

use crate::lazy::Lazy;
use crate::services::{BrokerService, Controller, Stdio};

/// go-plugin's services (health, reflection, broker, controller, stdio) and the app's.
pub(crate) async fn routes(
    shutdown: &CancellationToken,
    (broker, link): (&Broker, &BrokerLink),
    output: Option<crate::stdio::Output>,
    set: crate::config::PluginSet,
    descriptor_sets: Vec<&'static [u8]>,
) -> tonic::service::Routes {
    let service_names: Vec<&'static str> = set.service_names().collect();
    let mut routes = RoutesBuilder::default();
    routes
        .add_service(health(shutdown).await)
        .add_service(GrpcBrokerServer::new(BrokerService::new(link.clone())))
        .add_service(GrpcControllerServer::new(Controller::new(
            shutdown.clone(),
            output.clone(),
        )))
        .add_service(GrpcStdioServer::new(Stdio::new(shutdown.clone(), output)));
    add_reflection(&mut routes, descriptor_sets, service_names);
    set.register(&mut routes, broker);
    routes.routes()
}

async fn health(
    shutdown: &CancellationToken,
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("plugin", tonic_health::ServingStatus::Serving)
        .await;
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        reporter
            .set_service_status("plugin", tonic_health::ServingStatus::NotServing)
            .await;
    });
    service
}

/// Reflection v1 and v1alpha listing exactly the registered services, as grpc-go does. Built on
/// first use: decoding the descriptor sets would otherwise delay the first call of every launch.
fn add_reflection(
    routes: &mut RoutesBuilder,
    app_sets: Vec<&'static [u8]>,
    app_services: Vec<&'static str>,
) {
    const INTERNAL: [&str; 6] = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "plugin.GRPCBroker",
        "plugin.GRPCController",
        "plugin.GRPCStdio",
    ];
    let builder = Arc::new(move || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
            .register_encoded_file_descriptor_set(plugwire_runtime::pb::FILE_DESCRIPTOR_SET);
        for set in &app_sets {
            builder = builder.register_encoded_file_descriptor_set(set);
        }
        for name in INTERNAL.iter().chain(&app_services) {
            builder = builder.with_service_name(*name);
        }
        builder
    });
    let invalid = |e: tonic_reflection::server::Error| {
        format!("gRPC reflection is unavailable: a descriptor set is invalid ({e})")
    };
    let v1 = builder.clone();
    routes
        .add_service(Lazy::new(move || v1().build_v1().map_err(invalid)))
        .add_service(Lazy::new(move || {
            builder().build_v1alpha().map_err(invalid)
        }));
}
