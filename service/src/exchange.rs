//! What one plugin operation did on the wire, collected for its refund: the redacted HTTP
//! exchanges the ledger keeps, how many requests reached the network (whether the provider may
//! have acted), and, when the operation is recorded, its recording. An [`Observer`] of the
//! operation, so that exchanges made before a trap or a deadline are kept too.
//!
//! Redaction (see [`Exchange::record`]) removes every configured secret value, the values of
//! headers that carry credentials, and the values of JSON fields named like credentials.

use std::sync::{Arc, Mutex};

use refundry_ledger::exchange::Exchange;
use refundry_runtime::PluginError;
use refundry_runtime::bindings::http::{HttpError, Request};
use refundry_runtime::observe::{
    Import, ImportAnswer, Observer, Operation, OperationAnswer, Scope, Sent,
};
use refundry_runtime::secret::Redactor;

use crate::replay::Recorder;

/// Where the exchanges of one plugin operation are collected. Cheap to clone.
#[derive(Clone)]
pub struct Exchanges {
    collected: Arc<Mutex<Collected>>,
    /// Removes the provider's secrets from each exchange.
    redactor: Redactor,
    /// The operation's recorder, when it is recorded.
    recorder: Option<Recorder>,
}

impl std::fmt::Debug for Exchanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.lock();
        f.debug_struct("Exchanges")
            .field("done", &c.done)
            .field("sent", &c.sent)
            .field("recording", &self.recorder.is_some())
            .finish()
    }
}

#[derive(Default)]
struct Collected {
    done: Vec<Exchange>,
    sent: usize,
}

impl Exchanges {
    /// An empty collection; exchanges are redacted with `redactor` (the provider's secrets).
    pub fn new(redactor: Redactor) -> Self {
        Self {
            collected: Arc::default(),
            redactor,
            recorder: None,
        }
    }

    /// An empty collection that also records the operation (see [`crate::replay`]).
    pub fn recording(redactor: Redactor, recorder: Recorder) -> Self {
        Self {
            recorder: Some(recorder),
            ..Self::new(redactor)
        }
    }

    /// The operation's recorder, when it is recorded.
    pub fn recorder(&self) -> Option<&Recorder> {
        self.recorder.as_ref()
    }

    /// This collection as the operation's observer.
    pub fn observer(&self) -> Option<Arc<dyn Observer>> {
        Some(Arc::new(self.clone()))
    }

    /// Takes every finished exchange collected so far.
    pub fn take(&self) -> Vec<Exchange> {
        std::mem::take(&mut self.lock().done)
    }

    /// How many requests were put on the wire, answered or not.
    pub fn sent(&self) -> usize {
        self.lock().sent
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Collected> {
        self.collected.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn keep(
        &self,
        request: &Request,
        result: &Result<refundry_runtime::bindings::http::Response, HttpError>,
        sent: Sent,
    ) {
        let e = Exchange::record(&self.redactor, request, result, sent.latency, sent.at_ms);
        let mut c = self.lock();
        c.sent += 1;
        c.done.push(e);
    }
}

impl Observer for Exchanges {
    fn operation_started(&self, scope: Scope<'_>, op: &Operation<'_>) {
        if let Some(r) = &self.recorder {
            r.operation_started(scope, op);
        }
    }

    fn import(&self, scope: Scope<'_>, call: &Import<'_>, answer: &ImportAnswer<'_>) {
        if let (
            Import::HttpSend {
                request,
                sent: Some(sent),
            },
            ImportAnswer::Http(result),
        ) = (call, answer)
        {
            self.keep(request, result, *sent);
        }
        if let Some(r) = &self.recorder {
            r.import(scope, call, answer);
        }
    }

    fn request_cut_off(&self, _scope: Scope<'_>, request: &Request, sent: Sent) {
        let cut = Err(HttpError::Transport(
            "cut off before the answer: the plugin operation ended (deadline)".into(),
        ));
        self.keep(request, &cut, sent);
    }

    fn operation_finished(&self, scope: Scope<'_>, answer: &Result<OperationAnswer, PluginError>) {
        if let Some(r) = &self.recorder {
            r.operation_finished(scope, answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use refundry_runtime::bindings::http::{Method, Response};
    use refundry_runtime::secret::Secret;

    use super::*;

    fn scope() -> Scope<'static> {
        Scope {
            provider: "p",
            plugin_version: "1",
            op: "create-refund",
        }
    }

    #[test]
    fn requests_on_the_wire_are_kept_redacted_and_counted_refused_ones_are_not() {
        let secret = Secret::new("s3cr3t-value");
        let exchanges = Exchanges::new(Redactor::new([&secret]));
        let req = Request {
            method: Method::Post,
            url: "http://p/refunds?sig=s3cr3t-value".into(),
            headers: vec![],
            body: None,
        };
        let ok = Ok(Response {
            status: 200,
            headers: vec![],
            body: b"{}".to_vec(),
        });
        let sent = Sent {
            at_ms: 7,
            latency: Duration::from_millis(3),
        };
        let on_wire = Import::HttpSend {
            request: &req,
            sent: Some(sent),
        };
        exchanges.import(scope(), &on_wire, &ImportAnswer::Http(&ok));
        let refused = Import::HttpSend {
            request: &req,
            sent: None,
        };
        let denied = Err(HttpError::Denied("not this provider's origin".into()));
        exchanges.import(scope(), &refused, &ImportAnswer::Http(&denied));
        exchanges.request_cut_off(scope(), &req, sent);
        assert_eq!(exchanges.sent(), 2);
        let kept = exchanges.take();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].status, Some(200));
        assert_eq!(kept[0].sent_at_ms, 7);
        assert!(!kept[0].url.contains("s3cr3t-value"), "{}", kept[0].url);
        assert!(kept[1].error.as_deref().unwrap().contains("cut off"));
    }
}
