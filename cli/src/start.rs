//! How this build starts the providers: with the natively linked plugins when it has them (the
//! benchmark baseline, feature `native-plugins`), else components only.

use refundry_service::StartOptions;

/// The start options of this build.
pub fn options() -> StartOptions {
    StartOptions {
        #[cfg(feature = "native-plugins")]
        native: Some(refundry_native::link),
        ..StartOptions::default()
    }
}
