//! Caller IP allowlist, shared by every provider simulator.
//!
//! Providers commonly accept API calls only from merchant IPs registered with them; an empty list
//! here means the check is off.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, MutexGuard};

use axum::extract::ConnectInfo;
use axum::http::Extensions;

/// Why an allowlist was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowlistError {
    /// An entry is not an IPv4 or IPv6 address.
    #[error("not an IP address: {entry:?}")]
    NotAnAddress {
        /// The entry as given.
        entry: String,
    },
}

/// The set of IPs allowed to call a simulator's API.
#[derive(Debug, Default)]
pub struct IpAllowlist {
    allowed: Mutex<Vec<IpAddr>>,
}

impl IpAllowlist {
    /// An empty (switched off) allowlist.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<IpAddr>> {
        // A plain list: a panic elsewhere cannot leave it half-updated.
        self.allowed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces the list with `entries` (textual IPs); an empty list switches the check off.
    /// Nothing changes when an entry is invalid.
    pub fn set<S: AsRef<str>>(&self, entries: &[S]) -> Result<Vec<IpAddr>, AllowlistError> {
        let parsed = entries
            .iter()
            .map(|entry| {
                let entry = entry.as_ref();
                entry
                    .trim()
                    .parse::<IpAddr>()
                    .map(|ip| ip.to_canonical())
                    .map_err(|_| AllowlistError::NotAnAddress {
                        entry: entry.to_owned(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        *self.lock() = parsed.clone();
        Ok(parsed)
    }

    /// Whether `peer` may call the API (always true while the list is empty).
    pub fn permits(&self, peer: IpAddr) -> bool {
        let allowed = self.lock();
        allowed.is_empty() || allowed.contains(&peer.to_canonical())
    }

    /// Checks the caller of a request (its `ConnectInfo` in `extensions`). `Err` carries the
    /// caller's address as text, for the provider's refusal. A request with no peer address (not
    /// served over TCP) is only let through while the list is off.
    pub fn check_caller(&self, extensions: &Extensions) -> Result<(), String> {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        match peer {
            Some(ip) if self.permits(ip) => Ok(()),
            Some(ip) => Err(ip.to_string()),
            None if self.lock().is_empty() => Ok(()),
            None => Err("unknown".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_is_read_from_connect_info() {
        let list = IpAllowlist::new();
        let mut ext = Extensions::new();
        assert_eq!(list.check_caller(&ext), Ok(()));
        ext.insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4000))));
        assert_eq!(list.check_caller(&ext), Ok(()));
        list.set(&["203.0.113.7"]).unwrap();
        assert_eq!(list.check_caller(&ext), Err("127.0.0.1".to_owned()));
        assert_eq!(
            list.check_caller(&Extensions::new()),
            Err("unknown".to_owned())
        );
    }

    #[test]
    fn empty_list_permits_everyone_and_list_restricts() {
        let list = IpAllowlist::new();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(list.permits(local));
        list.set(&["203.0.113.7"]).unwrap();
        assert!(!list.permits(local));
        assert!(list.permits("203.0.113.7".parse().unwrap()));
        // An IPv4 peer seen through a dual-stack socket is the same caller.
        assert!(list.permits("::ffff:203.0.113.7".parse().unwrap()));
        list.set::<&str>(&[]).unwrap();
        assert!(list.permits(local));
    }

    #[test]
    fn invalid_entries_change_nothing() {
        let list = IpAllowlist::new();
        list.set(&["203.0.113.7"]).unwrap();
        assert!(list.set(&["203.0.113.7", "not-an-ip"]).is_err());
        assert!(list.permits("203.0.113.7".parse().unwrap()));
    }
}
