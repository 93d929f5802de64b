//! Recordings in the ledger: what a [`Recorder`] collected, written once when the operation
//! ends, and read back for a replay. The ledger keeps each as JSON (see
//! [`refundry_ledger::recordings`]); this is where it becomes a [`Recording`] again.

use refundry_ledger::db::{Database, DbError};
use refundry_ledger::recordings::{self, NewRecording, OperationLog, PendingLog, RecordingTable};

use crate::config::RecordingConfig;
use std::sync::Arc;

use super::record::{RecordedBy, Recorder, Recording, SecretMasks};

/// Where a service keeps its recordings. Cheap to clone.
#[derive(Clone)]
pub struct Recordings {
    table: RecordingTable,
    config: RecordingConfig,
}

/// A recording as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecording {
    /// The refund it was made for.
    pub refund_id: String,
    /// Its place among the refund's operations, from 1.
    pub seq: i64,
    /// Which plugin version ran it.
    pub by: RecordedBy,
    /// When it was written (ms since the epoch).
    pub recorded_at: i64,
    /// Its size in the table, in bytes.
    pub size: i64,
    /// The recording.
    pub recording: Recording,
}

impl Recordings {
    /// Recordings in `db`, under `config`.
    pub fn new(db: Database, config: RecordingConfig) -> Self {
        Self {
            table: RecordingTable::new(db, config.max_total_bytes),
            config,
        }
    }

    /// A recorder for one operation run by `by`, or `None` when recording is off.
    pub fn recorder(&self, by: RecordedBy, masks: Arc<SecretMasks>) -> Option<Recorder> {
        self.config
            .enabled
            .then(|| Recorder::new(by, self.config.max_operation_bytes, masks))
    }

    /// Writes `new` (made by [`Recordings::prepare`]) as the next operation of its refund, then
    /// deletes the oldest recordings while all of them pass the cap.
    pub async fn insert(&self, new: NewRecording) -> Result<(), DbError> {
        self.table.insert(new).await
    }

    /// The recorder's recording as a row to write ([`Recordings::insert`]), if it made one.
    pub fn prepare(
        &self,
        refund_id: &str,
        recorder: &Recorder,
        now_ms: i64,
    ) -> Result<Option<NewRecording>, DbError> {
        let Some(recording) = recorder.take() else {
            return Ok(None);
        };
        let json = serde_json::to_string(&recording).map_err(|e| DbError::Task(e.to_string()))?;
        Ok(Some(NewRecording {
            refund_id: refund_id.to_owned(),
            operation: recording.input.operation(),
            by: recorder.by(),
            truncated: recording.truncated,
            json,
            now_ms,
        }))
    }

    /// Logs one operation's exchanges and writes its recording in one write of the ledger,
    /// sent now, its answer to await later ([`RecordingTable::queue_operation`]): a recording
    /// that could not be written comes back as `Ok(Some(error))`.
    pub async fn queue_operation(
        &self,
        log: OperationLog,
        recording: Option<NewRecording>,
    ) -> Result<PendingLog, DbError> {
        self.table.queue_operation(log, recording).await
    }

    /// Bytes of every recording in the table.
    pub async fn total_bytes(&self) -> Result<i64, DbError> {
        self.table.total_bytes().await
    }
}

/// Why a stored recording could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadRecordingError {
    /// The database failed.
    #[error(transparent)]
    Database(#[from] DbError),
    /// A row does not hold a recording this build can read.
    #[error("recording {seq} of refund {refund_id} is unreadable: {message}")]
    Unreadable {
        /// The refund.
        refund_id: String,
        /// The operation's sequence number.
        seq: i64,
        /// What the JSON parser said.
        message: String,
    },
}

/// Every recording of `refund_id`, in operation order.
pub async fn load(
    db: &Database,
    refund_id: &str,
) -> Result<Vec<StoredRecording>, LoadRecordingError> {
    recordings::load(db, refund_id)
        .await?
        .into_iter()
        .map(|row| {
            let recording =
                serde_json::from_str(&row.json).map_err(|e| LoadRecordingError::Unreadable {
                    refund_id: refund_id.to_owned(),
                    seq: row.seq,
                    message: e.to_string(),
                })?;
            Ok(StoredRecording {
                refund_id: refund_id.to_owned(),
                seq: row.seq,
                by: row.by,
                recorded_at: row.recorded_at,
                size: row.size,
                recording,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::record::{Input, RecordedAnswer, RecordedCall};

    impl Recordings {
        /// Writes what `recorder` collected as the next operation of `refund_id` (nothing when
        /// it collected nothing), as the service does: [`Recordings::prepare`], then
        /// [`Recordings::insert`].
        async fn save(
            &self,
            refund_id: &str,
            recorder: &Recorder,
            now_ms: i64,
        ) -> Result<(), DbError> {
            match self.prepare(refund_id, recorder, now_ms)? {
                Some(new) => self.insert(new).await,
                None => Ok(()),
            }
        }
    }

    fn by() -> RecordedBy {
        RecordedBy {
            provider: "p".into(),
            plugin_version: "0.1.0".into(),
            plugin_sha256: "ab".into(),
        }
    }

    fn recorder(store: &Recordings, steps: usize) -> Recorder {
        let rec = store.recorder(by(), Arc::default()).unwrap();
        rec.input(Input::GetRefund {
            provider_refund_id: Some("r".into()),
            external_refund_id: None,
            original_transaction_id: None,
        });
        for i in 0..steps {
            rec.step(RecordedCall::ClockNow, RecordedAnswer::Clock(i as i64));
        }
        rec
    }

    #[tokio::test]
    async fn operations_are_numbered_per_refund_and_read_back_in_order() {
        let db = Database::open(None).unwrap();
        let store = Recordings::new(db.clone(), RecordingConfig::default());
        for refund in ["a", "b", "a"] {
            store.save(refund, &recorder(&store, 3), 7).await.unwrap();
        }
        let a = load(&db, "a").await.unwrap();
        assert_eq!(a.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(a[0].by, by());
        assert_eq!(a[0].recorded_at, 7);
        assert_eq!(a[0].recording.steps.len(), 3);
        assert_eq!(load(&db, "b").await.unwrap().len(), 1);
        assert!(load(&db, "c").await.unwrap().is_empty());
        // A recorder with nothing in it writes nothing.
        let empty = store.recorder(by(), Arc::default()).unwrap();
        store.save("c", &empty, 7).await.unwrap();
        assert!(load(&db, "c").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_oldest_recordings_go_when_the_total_passes_its_cap() {
        // The size of one such recording, measured in a database of its own.
        let probe = Recordings::new(Database::open(None).unwrap(), RecordingConfig::default());
        probe.save("probe", &recorder(&probe, 10), 0).await.unwrap();
        let one = probe.total_bytes().await.unwrap();
        let db = Database::open(None).unwrap();

        // Room for three and a half such recordings.
        let config = RecordingConfig {
            max_total_bytes: (one * 7 / 2) as u64,
            max_operation_bytes: 1024,
            enabled: true,
        };
        let store = Recordings::new(db.clone(), config);
        for i in 0..6 {
            store
                .save(&format!("r{i}"), &recorder(&store, 10), i)
                .await
                .unwrap();
            assert!(store.total_bytes().await.unwrap() <= config.max_total_bytes as i64);
        }
        for (i, kept) in [false, false, false, true, true, true]
            .into_iter()
            .enumerate()
        {
            let rows = load(&db, &format!("r{i}")).await.unwrap();
            assert_eq!(!rows.is_empty(), kept, "r{i}");
        }
        // A new process (no count yet) counts the table once, then keeps to the cap too.
        let again = Recordings::new(db.clone(), config);
        again.save("r6", &recorder(&again, 10), 6).await.unwrap();
        assert!(load(&db, "r3").await.unwrap().is_empty());
        assert_eq!(again.total_bytes().await.unwrap(), one * 3);
    }

    #[tokio::test]
    async fn recording_off_gives_no_recorder_and_a_truncated_one_says_so() {
        let db = Database::open(None).unwrap();
        let off = Recordings::new(
            db.clone(),
            RecordingConfig {
                enabled: false,
                ..RecordingConfig::default()
            },
        );
        assert!(off.recorder(by(), Arc::default()).is_none());
        let small = Recordings::new(
            db.clone(),
            RecordingConfig {
                max_operation_bytes: 1024,
                ..RecordingConfig::default()
            },
        );
        small.save("t", &recorder(&small, 500), 0).await.unwrap();
        let rows = load(&db, "t").await.unwrap();
        assert!(rows[0].recording.truncated);
        assert!(rows[0].size < 4096, "{}", rows[0].size);
    }
}
