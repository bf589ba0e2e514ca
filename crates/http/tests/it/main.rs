//! `HttpTransport` against real servers on 127.0.0.1, one binary with a module per concern.
//!
//! The tests assert behaviour only, never how long something took.

mod delivery;
mod egress;
mod failures;
mod limits;
mod pool;
mod proxy;
mod tls;
mod util;
