//! Host-side bindings of the `refundry:provider` contract, generated from `wit/`.

wasmtime::component::bindgen!({
    path: "../wit",
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
pub use refundry::provider::{clock, config, http, log, storage};
