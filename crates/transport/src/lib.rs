//! The pluggable transport of linq-hooks: whatever sends one webhook request and brings back
//! the answer.
//!
//! A [`Transport`] takes a [`Request`] (URL, headers, body) and returns a [`Response`] (status,
//! `Retry-After`, at most [`MAX_RESPONSE_BODY`] bytes of body) or an [`Error`] that says what
//! kind of failure it was. Retries, signing and bookkeeping belong to the caller; a transport
//! makes exactly one attempt, follows no redirects and sets its own timeouts.
//!
//! This crate holds only the contract, so that code that delivers webhooks can be written and
//! tested without an HTTP stack: it does not depend on hyper or any TLS library. The HTTP
//! implementation is `linq-hooks-http`, the MQTT one `linq-hooks-mqtt`; an in-memory one for
//! tests is `MemoryTransport` (cargo feature `memory`). [`ByScheme`] sends each request with the
//! transport for its URL's scheme, so one dispatcher delivers over several transports.
//!
//! # Implementing a transport
//!
//! The trait is object-safe (`Arc<dyn Transport>` works) through
//! [`async_trait`](macro@async_trait), which this crate re-exports so that an implementor needs
//! no dependency of its own:
//!
//! ```
//! use linq_hooks_transport::{Error, Request, Response, Transport, async_trait};
//!
//! /// Refuses every URL that is not on the lab network.
//! struct LabOnly<T>(T);
//!
//! #[async_trait]
//! impl<T: Transport> Transport for LabOnly<T> {
//!     async fn send(&self, request: Request) -> Result<Response, Error> {
//!         if !request.url().starts_with("https://lab.example/") {
//!             return Err(Error::invalid_request(format!("{} is not a lab URL", request.url())));
//!         }
//!         self.0.send(request).await
//!     }
//! }
//!
//! # struct Accept;
//! # #[async_trait]
//! # impl Transport for Accept {
//! #     async fn send(&self, _: Request) -> Result<Response, Error> { Ok(Response::new(204)) }
//! # }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let transport: std::sync::Arc<dyn Transport> = std::sync::Arc::new(LabOnly(Accept));
//! let err = transport.send(Request::new("https://elsewhere.example/", "{}")).await.unwrap_err();
//! assert!(err.is_invalid_request());
//! assert!(transport.send(Request::new("https://lab.example/hook", "{}")).await?.is_success());
//! # Ok::<(), Error>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]

mod by_scheme;
mod egress;
mod error;
#[cfg(feature = "memory")]
mod memory;
mod request;
mod response;

use std::sync::Arc;

pub use by_scheme::ByScheme;
/// The cheaply cloned byte buffer of request and response bodies (from the `bytes` crate).
///
/// ```
/// let body = linq_hooks_transport::Bytes::from_static(b"{}");
/// let for_retry = body.clone(); // shares the data, copies nothing
/// assert_eq!(body, for_retry);
/// ```
pub use bytes::Bytes;
pub use egress::{EgressPolicy, PRIVATE_RANGES, PrivateRange, Refused};
pub use error::{BoxError, Error};
/// An IPv4 or IPv6 network, such as `10.0.0.0/8` (from the `ipnet` crate), for
/// [`EgressPolicy`]; parse one with `str::parse`.
pub use ipnet::IpNet;
#[cfg(feature = "memory")]
pub use memory::MemoryTransport;
pub use request::Request;
pub use response::{MAX_RESPONSE_BODY, Response};

/// The attribute macro that implementations of [`Transport`] are written with (from the
/// `async-trait` crate).
///
/// ```
/// use linq_hooks_transport::{Error, Request, Response, Transport, async_trait};
///
/// struct AlwaysGone;
///
/// #[async_trait]
/// impl Transport for AlwaysGone {
///     async fn send(&self, _request: Request) -> Result<Response, Error> {
///         Ok(Response::new(410))
///     }
/// }
/// ```
pub use async_trait::async_trait;

/// Sends one webhook request and returns the answer.
///
/// One call is one attempt: an implementation does not retry and does not follow redirects (a
/// `3xx` is returned as a [`Response`]). It bounds the time a call takes, reads at most
/// [`MAX_RESPONSE_BODY`] bytes of the response body, and reports failures with the [`Error`]
/// kinds a retry policy needs (connect, timeout, TLS, invalid request, body).
///
/// Implement it with [`async_trait`](macro@async_trait). `Arc<T>` and `Box<T>` of a transport
/// are transports too, also for `T = dyn Transport`.
///
/// ```
/// use std::sync::Arc;
/// use linq_hooks_transport::{Error, Request, Response, Transport, async_trait};
///
/// struct Teapot;
///
/// #[async_trait]
/// impl Transport for Teapot {
///     async fn send(&self, _request: Request) -> Result<Response, Error> {
///         Ok(Response::new(418).with_body("short and stout"))
///     }
/// }
///
/// async fn deliver(transport: &dyn Transport, body: &'static str) -> Result<bool, Error> {
///     let response = transport.send(Request::new("https://lims.example/hook", body)).await?;
///     Ok(response.is_success())
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let transport: Arc<dyn Transport> = Arc::new(Teapot);
/// assert!(!deliver(&transport, "{}").await?);
/// # Ok::<(), Error>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait Transport: Send + Sync {
    /// Makes one attempt at delivering `request`.
    ///
    /// `Ok` means an HTTP response came back, whatever its status: judging it is the
    /// caller's business ([`Response::is_success`]).
    ///
    /// ```
    /// # use linq_hooks_transport::{Error, Request, Response, Transport, async_trait};
    /// # struct Echo;
    /// # #[async_trait]
    /// # impl Transport for Echo {
    /// #     async fn send(&self, request: Request) -> Result<Response, Error> {
    /// #         Ok(Response::new(200).with_body(request.body().clone()))
    /// #     }
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let response = Echo.send(Request::new("https://lims.example/hook", "[1]")).await?;
    /// assert_eq!(response.status(), 200);
    /// assert_eq!(response.body().as_ref(), b"[1]");
    /// # Ok::<(), Error>(())
    /// # }).unwrap();
    /// ```
    async fn send(&self, request: Request) -> Result<Response, Error>;
}

#[async_trait]
impl<T: Transport + ?Sized> Transport for Arc<T> {
    async fn send(&self, request: Request) -> Result<Response, Error> {
        (**self).send(request).await
    }
}

#[async_trait]
impl<T: Transport + ?Sized> Transport for Box<T> {
    async fn send(&self, request: Request) -> Result<Response, Error> {
        (**self).send(request).await
    }
}
