//! Guest SDK for Refundry provider plugins.
//!
//! A plugin implements [`Provider`] against a [`Host`] and registers it with [`export_provider!`]:
//!
//! ```ignore
//! struct MyProvider;
//! impl refundry_sdk::Provider for MyProvider { /* describe, create_refund, get_refund, parse_webhook */ }
//! refundry_sdk::export_provider!(MyProvider);
//! ```
//!
//! The WIT bindings are generated here and kept private; the contract's types are re-exported at
//! the crate root (and the HTTP types in [`http`]) under their generated names. Because the logic
//! only sees a `&impl Host`, the same plugin crate also builds natively (as an rlib) and runs with
//! [`testing::FakeHost`] in unit tests and in the host's native benchmark.
//!
//! What a plugin keeps is its provider: wire types, signing, its error table, status mapping and
//! webhook checks. Everything around them is here, one module a concern:
//! - [`settings`]: configuration keys and secrets, refused as `configuration` when unusable;
//! - [`validate`] and [`lookup`]: what a request must be before any call, and where a lookup asks;
//! - [`reply`]: one call through the host and the reading of its answer;
//! - [`errors`]: the flows' [`errors::ProviderError`], mapped once into [`RefundError`] by the
//!   contract's rules (what is final, retryable or an unknown outcome);
//! - [`token`]: a short-lived token cached in host storage;
//! - [`list`]: the range, cursor and page of `list-refunds`;
//! - [`webhook`]: the secret, freshness and outcomes of `parse-webhook`;
//! - [`money`], [`time`], [`convert`], [`crypto`], [`http`]: the pieces wire formats and
//!   signatures are made of.
#![deny(missing_docs)]

pub mod convert;
pub mod crypto;
pub mod errors;
mod host;
pub mod http;
pub mod list;
pub mod lookup;
pub mod money;
pub mod reply;
pub mod settings;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod time;
pub mod token;
pub mod validate;
pub mod webhook;

/// The plugin's heap. Rust's own wasm allocator takes every heap page by growing linear memory,
/// and a memory that grew costs the host an `mprotect` to shrink the pool slot back before its
/// next instance, whose TLB shootdown interrupts every core the host runs on. This release of
/// dlmalloc starts the heap in the free part of the initial memory (between `__heap_base` and
/// `__heap_end`), which the workspace links at 256 KiB (`.cargo/config.toml`): an operation then
/// grows memory only when it needs more than that. A plugin is one thread, so the allocator's
/// lock is a no-op. Not in the core module of the Extism comparison, which keeps its own.
#[cfg(all(target_arch = "wasm32", not(feature = "no-component-exports")))]
#[global_allocator]
static HEAP: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

pub use host::Host;
#[cfg(any(target_arch = "wasm32", doc))]
pub use host::WasmHost;

pub use __private::wit::refundry::provider::log::Level;
pub use __private::wit::refundry::provider::storage::StorageError;
pub use __private::wit::refundry::provider::types::{
    Money, ProviderInfo, Refund, RefundError, RefundLookup, RefundPage, RefundRequest,
    RefundStatus, Refusal, RefusalKind, Retryable, TimeRange, WebhookError, WebhookEvent,
    WebhookOutcome, WebhookRequest,
};

/// A provider's refund logic. All functions are associated (no `self`): the host runs each
/// operation on a fresh instance, so there is no state to keep but what [`Host`] storage holds.
pub trait Provider {
    /// What this plugin is: id, version, currencies, refund rules. Must not use the host.
    fn describe() -> ProviderInfo;

    /// Asks the provider to refund `req`.
    fn create_refund(host: &impl Host, req: RefundRequest) -> Result<Refund, RefundError>;

    /// Looks a refund up at the provider; `original_transaction_id` is the payment it was made
    /// against, when the host knows it.
    fn get_refund(
        host: &impl Host,
        lookup: RefundLookup,
        original_transaction_id: Option<String>,
    ) -> Result<Refund, RefundError>;

    /// One page of the refunds the provider holds whose creation falls in `range`; `cursor` is
    /// `None` for the first page, then the previous page's `next_cursor`. By default the
    /// provider cannot list refunds: the answer is a refusal of kind `unsupported`.
    fn list_refunds(
        _host: &impl Host,
        _range: TimeRange,
        _cursor: Option<String>,
    ) -> Result<RefundPage, RefundError> {
        Err(errors::refused(
            RefusalKind::Unsupported,
            "this provider cannot list refunds",
        ))
    }

    /// Verifies and parses a webhook delivery (headers as received, names in any case; the raw
    /// body): its events, or `ignored` for a verified event type the plugin does not handle.
    fn parse_webhook(
        host: &impl Host,
        req: &WebhookRequest,
    ) -> Result<WebhookOutcome, WebhookError>;
}

/// Exports `$ty` (a type implementing [`Provider`]) as the component's `provider` interface,
/// running it with [`WasmHost`].
///
/// Invoke it once per plugin crate, at module level. The export functions exist only when
/// compiling for `wasm32`: natively the macro only checks that `$ty` implements [`Provider`], and
/// the plugin crate is a plain library, so several plugins can be linked into one binary (the
/// host's benchmark) without their export symbols clashing. On wasm, each export first installs (once per instance) a panic hook
/// that writes the panic message and location to the host log at error level before the trap.
/// With the SDK's `no-component-exports` feature there are no export functions on wasm either.
#[macro_export]
macro_rules! export_provider {
    ($ty:ty) => {
        // Checked on every target, so a native `cargo check` catches a type that is no provider;
        // a closure that is never called emits no code and no symbol.
        const _: fn() = || {
            fn assert_provider<P: $crate::Provider>() {}
            assert_provider::<$ty>();
        };
        $crate::__export_component!($ty);
    };
}

/// The wasm side of [`export_provider!`]: `$ty` as the contract's `provider` exports.
#[cfg(not(feature = "no-component-exports"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_component {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            // wit-bindgen's export macro takes an identifier, not a type: name the adapter.
            type __RefundryGuest = $crate::__private::Adapter<$ty>;
            $crate::__private::wit::__export_refund_plugin!(
                __RefundryGuest with_types_in $crate::__private::wit
            );
        };
    };
}

/// With `no-component-exports`, no exports on wasm either: a wasm module linking several plugin
/// crates would export the contract's functions once per crate (a duplicate symbol), and every
/// export would pull in the contract's imports, which only a component host provides.
#[cfg(feature = "no-component-exports")]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_component {
    ($ty:ty) => {};
}

/// Implementation details of [`export_provider!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    /// The generated bindings. Public only so that [`export_provider!`](crate::export_provider)
    /// can reach them from the plugin crate.
    #[allow(missing_docs, clippy::all)]
    pub mod wit {
        wit_bindgen::generate!({
            path: "../../wit/v0.2.0",
            world: "refund-plugin",
            // wit-bindgen already derives Clone (records, variants) and implements Debug; equality
            // lets plugin tests compare whole refunds and errors.
            additional_derives: [PartialEq, Eq, Clone],
            // The export macro is invoked from plugin crates (through `export_provider!`)...
            pub_export_macro: true,
            export_macro_name: "__export_refund_plugin",
            // ...where the bindings are found at this path.
            default_bindings_module: "::refundry_sdk::__private::wit",
        });
    }

    /// Adapts a [`Provider`](crate::Provider) to the generated export trait.
    pub struct Adapter<P>(core::marker::PhantomData<P>);

    #[cfg(target_arch = "wasm32")]
    mod adapter {
        use super::Adapter;
        use super::wit::exports::refundry::provider::provider::Guest;
        use crate::{
            Host, Level, Provider, ProviderInfo, Refund, RefundError, RefundLookup, RefundPage,
            RefundRequest, TimeRange, WasmHost, WebhookError, WebhookOutcome, WebhookRequest,
        };

        /// Reports a panic through the `log` import: with `panic = "abort"` the instance traps
        /// right after, and without this the host would only see `unreachable`.
        fn install_panic_hook() {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                std::panic::set_hook(Box::new(|info| {
                    let message = info
                        .payload_as_str()
                        .unwrap_or("(non-string panic payload)");
                    let location = info
                        .location()
                        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                        .unwrap_or_default();
                    WasmHost.log(
                        Level::Error,
                        &format!("plugin panicked: {message}"),
                        &[("location", &location)],
                    );
                }));
            });
        }

        impl<P: Provider> Guest for Adapter<P> {
            fn describe() -> ProviderInfo {
                install_panic_hook();
                P::describe()
            }

            fn create_refund(req: RefundRequest) -> Result<Refund, RefundError> {
                install_panic_hook();
                P::create_refund(&WasmHost, req)
            }

            fn get_refund(
                lookup: RefundLookup,
                original_transaction_id: Option<String>,
            ) -> Result<Refund, RefundError> {
                install_panic_hook();
                P::get_refund(&WasmHost, lookup, original_transaction_id)
            }

            fn list_refunds(
                range: TimeRange,
                cursor: Option<String>,
            ) -> Result<RefundPage, RefundError> {
                install_panic_hook();
                P::list_refunds(&WasmHost, range, cursor)
            }

            fn parse_webhook(req: WebhookRequest) -> Result<WebhookOutcome, WebhookError> {
                install_panic_hook();
                P::parse_webhook(&WasmHost, &req)
            }
        }
    }
}

// Two attributes rather than `all(test, ...)`: tools that skip test modules (the layering
// check) know them by a plain `#[cfg(test)]`.
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    /// A provider that implements only what it must.
    struct CallbackOnly;

    impl Provider for CallbackOnly {
        fn describe() -> ProviderInfo {
            unreachable!("not called")
        }
        fn create_refund(_: &impl Host, _: RefundRequest) -> Result<Refund, RefundError> {
            unreachable!("not called")
        }
        fn get_refund(
            _: &impl Host,
            _: RefundLookup,
            _: Option<String>,
        ) -> Result<Refund, RefundError> {
            unreachable!("not called")
        }
        fn parse_webhook(
            _: &impl Host,
            _: &WebhookRequest,
        ) -> Result<WebhookOutcome, WebhookError> {
            unreachable!("not called")
        }
    }

    #[test]
    fn a_provider_that_does_not_list_refunds_answers_unsupported_without_a_call() {
        let host = FakeHost::new();
        let range = TimeRange { from: 0, to: 1_000 };
        match CallbackOnly::list_refunds(&host, range, None) {
            Err(RefundError::Refused(Refusal {
                kind: RefusalKind::Unsupported,
                provider_code: None,
                http_status: None,
                ..
            })) => {}
            other => panic!("expected an unsupported refusal, got {other:?}"),
        }
        assert!(host.requests().is_empty());
    }
}
