//! Black-box tests of `berth serve`: OCI Distribution v1.1 over HTTPS, plus skopeo end to end.
//! Every test starts its own server on its own temporary data directory.

mod auth;
mod auth_clients;
mod auth_credentials;
mod auth_deviations;
mod auth_matrix;
mod auth_support;
mod auth_tokens;
mod cluster;
mod cluster_nodes;
mod harness;
mod owner;
mod policy;

mod backup;
mod base;
mod big;
mod blobs;
mod cli_connect;
mod cli_messages;
mod cli_trust_reset;
mod client;
mod concurrency;
mod corrupt_state;
mod cosign;
mod crash;
mod distributed;
mod errors;
mod gc;
mod manifests;
mod metrics;
mod names;
mod notation;
mod notation_cose;
mod ops_audit;
mod ops_logs;
mod ops_repository;
mod referrers;
mod restart;
mod robustness;
mod skopeo;
mod skopeo_sigstore;
mod store_check;
mod tags_catalog;
mod ui;
mod uploads;
mod webhooks;

mod trust_cli;
mod trust_client;
mod trust_docker;
mod trust_harness;
mod trust_migrate;
mod trust_notary;
mod trust_switch;
mod trust_wire;
