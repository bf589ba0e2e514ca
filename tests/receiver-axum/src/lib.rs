//! Nothing here: the package is its test, `tests/dispatch.rs`, an axum receiver built on
//! `linq-hooks-receiver` alone, fed by the real `linq-hooks dispatch`.
