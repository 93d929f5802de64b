//! Host-side bindings of the newest `refundry:provider` contract, generated from
//! `wit/v0.2.0/`: the types every operation of the runtime speaks. Components built against an
//! older released contract run through its adapter (see [`crate::contract`]).

wasmtime::component::bindgen!({
    path: "../wit/v0.2.0",
    world: "refund-plugin",
    imports: {
        // A plugin waiting on the network must hold no host thread: `send` is async and the
        // guest's instance is suspended on its fiber while reqwest waits.
        "refundry:provider/http.send": async,
        // SQLite calls run on tokio's blocking pool, so storage is async too.
        "refundry:provider/storage": async,
    },
    // Exports are called from async code (the host is a tokio service); async exports let the
    // guest yield at `http.send` without blocking the runtime.
    exports: { default: async },
    // Refunds and errors are compared in tests and by the state machine.
    additional_derives: [PartialEq, Eq],
});

pub use exports::refundry::provider::provider as guest;
pub use refundry::provider::types;
pub use refundry::provider::{clock, config, crypto, http, log, storage};

impl types::RefundStatus {
    /// The status as the contract spells it (`pending`, `processed`, `failed`, `reversed`).
    pub fn as_str(self) -> &'static str {
        use types::RefundStatus as S;
        match self {
            S::Pending => "pending",
            S::Processed => "processed",
            S::Failed => "failed",
            S::Reversed => "reversed",
        }
    }
}

impl types::RefusalKind {
    /// The kind as the contract spells it (`amount-exceeded`, ...).
    pub fn as_str(self) -> &'static str {
        use types::RefusalKind as K;
        match self {
            K::InvalidRequest => "invalid-request",
            K::Authentication => "authentication",
            K::Forbidden => "forbidden",
            K::InvalidTransaction => "invalid-transaction",
            K::IdempotencyConflict => "idempotency-conflict",
            K::AmountExceeded => "amount-exceeded",
            K::CurrencyMismatch => "currency-mismatch",
            K::WindowExpired => "window-expired",
            K::NotSettled => "not-settled",
            K::InsufficientFunds => "insufficient-funds",
            K::NotFound => "not-found",
            K::Configuration => "configuration",
            K::Unsupported => "unsupported",
            K::Other => "other",
        }
    }
}
