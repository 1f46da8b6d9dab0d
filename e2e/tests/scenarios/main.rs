//! The scenarios of the end-to-end suite (issue 14): the real `weir-operator` and
//! `weir-proxy` binaries against a real API server, proxies and backends in network
//! namespaces. Each scenario asserts on traffic and on status (`observedGeneration`
//! included). They run one at a time (see `weir_e2e::scenario`); without root or without
//! `KUBECONFIG` each says which is missing and passes.

mod common;
mod s10_plugin_secrets;
mod s11_ingress;
mod s12_gateway_api;
mod s1_service_backend;
mod s2_plugin_edit;
mod s3_plugin_syntax_error;
mod s4_missing_service;
mod s5_tls;
mod s6_two_proxies;
mod s7_operator_restart;
mod s8_conflicts;
mod s9_scale;
