//! STAND-IN (P2's branch only): P1's `postgres/mod.rs` replaces this file. It holds just what
//! `cluster.rs` needs from it: the `Connect`/`Tls` types of the contract.
// Until P1's store uses the cluster, only its tests do.
#![allow(dead_code)]

pub(crate) mod cluster;

/// How the LISTEN connection is encrypted (contract: P1 defines it).
#[derive(Clone)]
pub(crate) enum Tls {
    None,
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

/// How to open a connection outside the pool (contract: P1 defines it).
#[derive(Clone)]
pub(crate) struct Connect {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: Tls,
}
