//! `[recording]`: whether plugin operations are recorded, and how much room recordings get.

use serde::Deserialize;

use super::error::{ConfigError, limit};

/// `[recording]`: record every plugin operation run for a refund, for `refundry replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingConfig {
    /// Whether operations are recorded (default true).
    pub enabled: bool,
    /// About the most one operation's recording keeps, in bytes (default 256 KiB). A recording
    /// that passes it is stored truncated and cannot be replayed exactly.
    pub max_operation_bytes: usize,
    /// The most all recordings together may take, in bytes (default 256 MiB); past it the
    /// oldest are deleted.
    pub max_total_bytes: u64,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_operation_bytes: 256 << 10,
            max_total_bytes: 256 << 20,
        }
    }
}

/// `[recording]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRecording {
    enabled: Option<bool>,
    max_operation_bytes: Option<u64>,
    max_total_bytes: Option<u64>,
}

impl RawRecording {
    /// Checks the values and fills in the defaults.
    pub(crate) fn resolve(self) -> Result<RecordingConfig, ConfigError> {
        let d = RecordingConfig::default();
        // At least a small operation's worth; at most what one SQLite value comfortably holds.
        let per_op = limit(
            "recording.max_operation_bytes",
            self.max_operation_bytes,
            d.max_operation_bytes as u64,
            1024..=64 << 20,
        )?;
        let total = self.max_total_bytes.unwrap_or(d.max_total_bytes);
        if total < per_op {
            return Err(ConfigError::BadLimit {
                key: "recording.max_total_bytes",
                value: total,
                reason: "at least recording.max_operation_bytes",
            });
        }
        Ok(RecordingConfig {
            enabled: self.enabled.unwrap_or(d.enabled),
            max_operation_bytes: per_op as usize,
            max_total_bytes: total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RecordingConfig, ConfigError> {
        toml::from_str::<RawRecording>(text).unwrap().resolve()
    }

    #[test]
    fn defaults_values_and_limits() {
        assert_eq!(parse("").unwrap(), RecordingConfig::default());
        assert!(RecordingConfig::default().enabled);
        let c =
            parse("enabled = false\nmax_operation_bytes = 4096\nmax_total_bytes = 8192").unwrap();
        assert_eq!(
            c,
            RecordingConfig {
                enabled: false,
                max_operation_bytes: 4096,
                max_total_bytes: 8192
            }
        );
        assert!(matches!(
            parse("max_operation_bytes = 10"),
            Err(ConfigError::BadLimit {
                key: "recording.max_operation_bytes",
                ..
            })
        ));
        assert!(matches!(
            parse("max_operation_bytes = 4096\nmax_total_bytes = 100"),
            Err(ConfigError::BadLimit {
                key: "recording.max_total_bytes",
                ..
            })
        ));
        assert!(toml::from_str::<RawRecording>("nope = 1").is_err());
    }
}
