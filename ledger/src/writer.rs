//! The SQLite ledger's writer: one thread that owns the connection and runs the ledger's work in
//! the order it arrives, with group commit.
//!
//! SQLite commits one transaction at a time, and with `synchronous = FULL` every commit waits for
//! the disk (about 7,400 commits/s on the project's machine). A refund writes several times, so
//! one transaction per write made the commit rate the service's ceiling. Here, writes sent with
//! [`Writer::write`] while another batch is running wait in the queue and are then run together
//! in one transaction and committed once. No write is answered before its batch has committed
//! (a commit that fails fails every write of the batch, none of which was answered).
//! Under load the commits per refund fall well below one; alone, a write costs what it did.
//!
//! A write that fails is undone alone: the others of its batch still commit. The writes run
//! without savepoints first, because a savepoint copies every page a write changes into its
//! journal (about a tenth of this thread's time when every write had one). Should a write fail,
//! the batch's transaction is rolled back and the batch's writes so far run again, each under a
//! savepoint of its own, so the failed one is rolled back to its savepoint alone; the rest of the
//! batch runs that way too. A write may therefore run more than once, and must do nothing but
//! its SQL (a value it keeps outside the database must watch [`Rollbacks`]).
//!
//! Work sent with [`Writer::run`] runs alone, outside any batch: it may open its own transaction
//! (the ledger's less frequent work does), or only read.
//!
//! The thread is the only user of the connection, so the work needs no lock and no hop through
//! tokio's blocking pool: the caller awaits a oneshot answer. It ends when the last handle is
//! dropped, after the work already queued.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::error::DbError;

/// The most writes one transaction takes: enough to amortize a commit, few enough that a batch
/// holds no write back for long.
const MAX_BATCH: usize = 128;

/// A handle on the writer thread; clones share it.
#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
    counts: Arc<Counts>,
}

/// What the writer has committed since it started.
#[derive(Default)]
struct Counts {
    /// Batched writes committed.
    writes: AtomicU64,
    /// Transactions that committed them.
    commits: AtomicU64,
    /// Batch transactions rolled back (by the writer, or by SQLite on an I/O error).
    rollbacks: AtomicU64,
}

/// How many times the writer has rolled back a batch's transaction. A write that keeps a value
/// it derived inside its transaction (a running total) must count again once this has changed:
/// the transaction it counted in may be gone, and the write run again.
#[derive(Clone)]
pub(crate) struct Rollbacks(Arc<Counts>);

impl Rollbacks {
    /// Rollbacks so far.
    pub(crate) fn count(&self) -> u64 {
        self.0.rollbacks.load(Ordering::SeqCst)
    }
}

/// A write to run in a batch ([`Write`]), boxed.
type BatchedWrite = Box<dyn Batched>;

/// A write in a batch: run (perhaps again, after a rollback), then answered once the batch is
/// over.
trait Batched: Send {
    /// Runs the write in the batch's transaction, under a savepoint of its own when
    /// `savepoint`; whether it succeeded.
    fn run(&mut self, conn: &Connection, savepoint: bool) -> bool;

    /// Answers: the result of its last run, when its batch committed (`committed`); the batch's
    /// error otherwise (it also answers a write that never ran, its batch unable to begin).
    fn answer(self: Box<Self>, committed: Result<(), &rusqlite::Error>);
}

/// A write sent with [`Writer::queue`]: its function, its last result, where to answer.
struct Write<F, R> {
    f: F,
    result: Option<Result<R, rusqlite::Error>>,
    answer: oneshot::Sender<Result<R, DbError>>,
}

impl<F, R> Batched for Write<F, R>
where
    F: Fn(&Connection) -> Result<R, rusqlite::Error> + Send,
    R: Send,
{
    fn run(&mut self, conn: &Connection, savepoint: bool) -> bool {
        let result = if savepoint {
            in_savepoint(conn, &self.f)
        } else {
            (self.f)(conn)
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, committed: Result<(), &rusqlite::Error>) {
        let result = match (self.result, committed) {
            (Some(Err(e)), _) => Err(DbError::Sqlite(e)),
            (_, Err(e)) => Err(DbError::Sqlite(copy(e))),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (None, Ok(())) => Err(DbError::Task(
                "the ledger's writer committed a batch without running a write of it".into(),
            )),
        };
        let _ = self.answer.send(result);
    }
}

enum Job {
    /// Runs alone with the connection, outside any transaction of the writer's.
    Alone(Box<dyn FnOnce(&Connection) + Send>),
    /// Runs inside a batch's transaction.
    Batched(BatchedWrite),
}

impl Writer {
    /// Starts the writer thread with `conn`.
    pub(crate) fn start(conn: Connection) -> Result<Self, DbError> {
        let (jobs, queue) = mpsc::channel();
        let counts = Arc::new(Counts::default());
        let counted = counts.clone();
        std::thread::Builder::new()
            .name("refundry-ledger-writer".into())
            .spawn(move || serve(&conn, &queue, &counted))
            .map_err(|e| DbError::Task(format!("cannot start the ledger's writer: {e}")))?;
        Ok(Self { jobs, counts })
    }

    /// The writes committed since the writer started, and the transactions they took.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let c = &self.counts;
        (
            c.writes.load(Ordering::Relaxed),
            c.commits.load(Ordering::Relaxed),
        )
    }

    /// How many times this writer has rolled back a batch's transaction.
    pub(crate) fn rollbacks(&self) -> Rollbacks {
        Rollbacks(self.counts.clone())
    }

    #[cfg(test)]
    fn commits(&self) -> u64 {
        self.counts().1
    }

    /// Runs `f` alone with the connection; it opens its own transaction when it needs one.
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, rusqlite::Error> + Send + 'static,
    ) -> Result<R, DbError> {
        let (answer, answered) = oneshot::channel();
        self.send(Job::Alone(Box::new(move |c| {
            let _ = answer.send(f(c).map_err(DbError::from));
        })))?;
        receive(answered).await
    }

    /// Runs `f` inside a transaction of the writer's, as one atomic unit, and answers once that
    /// transaction has committed. `f` must not begin or commit a transaction itself, and may run
    /// more than once (see the module's documentation): it must do nothing but its SQL.
    pub(crate) async fn write<R: Send + 'static>(
        &self,
        f: impl Fn(&Connection) -> Result<R, rusqlite::Error> + Send + 'static,
    ) -> Result<R, DbError> {
        self.queue(f)?.answer().await
    }

    /// Sends `f` to run as [`Writer::write`] runs it, now, and returns its answer to await
    /// later. The writer takes its work in the order sent and answers a write only once its
    /// batch has committed, so once any write sent after this one is answered, this one's
    /// answer is in: a caller that queues a write and then awaits a later one waits for one
    /// commit, not two.
    pub(crate) fn queue<R: Send + 'static>(
        &self,
        f: impl Fn(&Connection) -> Result<R, rusqlite::Error> + Send + 'static,
    ) -> Result<Queued<R>, DbError> {
        let (answer, answered) = oneshot::channel();
        self.send(Job::Batched(Box::new(Write {
            f,
            result: None,
            answer,
        })))?;
        Ok(Queued(answered))
    }

    fn send(&self, job: Job) -> Result<(), DbError> {
        self.jobs
            .send(job)
            .map_err(|_| DbError::Task("the ledger's writer has stopped".into()))
    }
}

/// A write sent to the writer ([`Writer::queue`]), its answer to come.
#[must_use = "a queued write's answer says whether it was written"]
pub(crate) struct Queued<R>(oneshot::Receiver<Result<R, DbError>>);

impl<R> Queued<R> {
    /// The write's answer, once its batch is over.
    pub(crate) async fn answer(self) -> Result<R, DbError> {
        receive(self.0).await
    }
}

async fn receive<R>(answered: oneshot::Receiver<Result<R, DbError>>) -> Result<R, DbError> {
    answered
        .await
        .map_err(|_| DbError::Task("the ledger's writer dropped the work (it panicked)".into()))?
}

/// The writer thread: each job in turn, batched writes together, until every handle is gone.
fn serve(conn: &Connection, queue: &mpsc::Receiver<Job>, counts: &Counts) {
    let mut next = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => match queue.recv() {
                Ok(job) => job,
                Err(mpsc::RecvError) => return,
            },
        };
        match job {
            Job::Alone(f) => {
                guarded(conn, counts, || f(conn));
            }
            Job::Batched(first) => next = batch(conn, first, queue, counts),
        }
    }
}

/// Runs `first` and the batched writes queued behind it in one transaction, then commits and
/// answers them; returns the job that ended the batch without being part of it.
fn batch(
    conn: &Connection,
    first: BatchedWrite,
    queue: &mpsc::Receiver<Job>,
    counts: &Counts,
) -> Option<Job> {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        first.answer(Err(&e));
        return None;
    }
    let mut done: Vec<BatchedWrite> = Vec::new();
    let mut next = None;
    let mut savepoints = false;
    let mut job = Some(first);
    while let Some(mut write) = job.take() {
        let Some(ok) = guarded(conn, counts, || write.run(conn, savepoints)) else {
            // It panicked (its answer goes with it) and the batch was rolled back.
            break;
        };
        if rolled_back_by_sqlite(conn, counts) {
            // On a full disk or an I/O error: nothing of this batch is written.
            done.push(write);
            break;
        }
        if !ok && !savepoints {
            // It may have failed after some of its statements, and only the whole transaction
            // can undo those: the batch runs again, each write under a savepoint.
            savepoints = true;
            again_with_savepoints(conn, counts, &mut done, &mut write);
        }
        done.push(write);
        if conn.is_autocommit() {
            // The batch could not run again: nothing of it is written.
            break;
        }
        if done.len() >= MAX_BATCH {
            break;
        }
        match queue.try_recv() {
            Ok(Job::Batched(write)) => job = Some(write),
            Ok(alone) => next = Some(alone),
            Err(_) => {}
        }
    }
    let committed = if conn.is_autocommit() {
        Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
            Some("the transaction was rolled back; nothing of it was written".into()),
        ))
    } else {
        conn.execute_batch("COMMIT")
    };
    match &committed {
        Ok(()) => {
            counts
                .writes
                .fetch_add(done.len() as u64, Ordering::Relaxed);
            counts.commits.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) if !conn.is_autocommit() => rollback(conn, counts),
        Err(_) => {}
    }
    for write in done {
        write.answer(committed.as_ref().map(|_| ()));
    }
    next
}

/// Rolls the batch's transaction back, and runs the writes of `done` and then `failed` again in
/// a new one, each under a savepoint of its own. Leaves the connection in autocommit (every
/// write of the batch fails) when the new transaction cannot begin or a write rolls it back.
fn again_with_savepoints(
    conn: &Connection,
    counts: &Counts,
    done: &mut [BatchedWrite],
    failed: &mut BatchedWrite,
) {
    rollback(conn, counts);
    if conn.execute_batch("BEGIN IMMEDIATE").is_err() {
        return;
    }
    for write in done.iter_mut().chain(std::iter::once(failed)) {
        let ran = guarded(conn, counts, || write.run(conn, true)).is_some();
        if !ran || rolled_back_by_sqlite(conn, counts) {
            return;
        }
    }
}

/// Whether the batch's transaction is gone after a write ran without panicking: SQLite rolls
/// the whole transaction back on some errors (a full disk, an I/O error). Counted.
fn rolled_back_by_sqlite(conn: &Connection, counts: &Counts) -> bool {
    let gone = conn.is_autocommit();
    if gone {
        counts.rollbacks.fetch_add(1, Ordering::SeqCst);
    }
    gone
}

/// Rolls back the open transaction, and counts it.
fn rollback(conn: &Connection, counts: &Counts) {
    let _ = conn.execute_batch("ROLLBACK");
    counts.rollbacks.fetch_add(1, Ordering::SeqCst);
}

/// Runs `f` under a savepoint, released when it succeeds and rolled back when it fails. Should
/// the savepoint itself fail, the whole transaction is rolled back, so that the batch fails
/// rather than commit part of a write. Savepoints nest: a write may use it for a part of itself.
pub(crate) fn in_savepoint<R>(
    c: &Connection,
    f: impl FnOnce(&Connection) -> Result<R, rusqlite::Error>,
) -> Result<R, rusqlite::Error> {
    c.execute_batch("SAVEPOINT write")?;
    let result = f(c);
    let closed = match &result {
        Ok(_) => c.execute_batch("RELEASE write"),
        Err(_) if c.is_autocommit() => Ok(()),
        Err(_) => c.execute_batch("ROLLBACK TO write; RELEASE write"),
    };
    if let Err(e) = closed {
        let _ = c.execute_batch("ROLLBACK");
        return Err(e);
    }
    result
}

/// Runs `f`, surviving its panic: a transaction left open is rolled back (a batch's whole
/// transaction: none of its writes has been answered yet).
fn guarded<R>(conn: &Connection, counts: &Counts, f: impl FnOnce() -> R) -> Option<R> {
    let value = catch_unwind(AssertUnwindSafe(f)).ok();
    if value.is_none() {
        tracing::error!("a ledger task panicked; its transaction is rolled back");
        if !conn.is_autocommit() {
            rollback(conn, counts);
        }
    }
    value
}

/// `e` again, for each write of a batch that it failed.
fn copy(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::sync::mpsc as std_mpsc;

    use std::future::Future;
    use std::task::{Context, Waker};

    use futures_util::FutureExt;
    use futures_util::future::join_all;

    use super::*;

    /// A writer on a fresh in-memory database with one table, `t (n INTEGER)`, and a parent
    /// table whose references are checked at commit.
    fn writer() -> Writer {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (n INTEGER NOT NULL);
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
             PRAGMA foreign_keys = ON;",
        )
        .unwrap();
        Writer::start(conn).unwrap()
    }

    /// Any write, for lists of different ones.
    type AnyWrite = Box<dyn Fn(&Connection) -> Result<(), rusqlite::Error> + Send>;

    fn insert(n: i64) -> impl Fn(&Connection) -> Result<(), rusqlite::Error> + Send + 'static {
        move |c| c.execute("INSERT INTO t (n) VALUES (?1)", [n]).map(|_| ())
    }

    async fn rows(w: &Writer) -> Vec<i64> {
        w.run(|c| {
            c.prepare("SELECT n FROM t ORDER BY n")?
                .query_map([], |r| r.get(0))?
                .collect()
        })
        .await
        .unwrap()
    }

    /// Polls `f` once (which sends its work to the writer); whether it is still pending.
    fn pending<F: Future>(f: std::pin::Pin<&mut F>) -> bool {
        f.poll(&mut Context::from_waker(Waker::noop())).is_pending()
    }

    /// Holds the writer thread until the returned sender is used (or dropped), so that the
    /// writes sent meanwhile queue up behind it.
    fn hold(w: &Writer) -> std_mpsc::Sender<()> {
        let (release, held) = std_mpsc::channel::<()>();
        w.send(Job::Alone(Box::new(move |_| {
            let _ = held.recv();
        })))
        .unwrap();
        release
    }

    /// Sends every write of `writes` (each is polled once, which queues it), releases the
    /// writer, and returns their answers.
    async fn queued<F>(w: &Writer, writes: Vec<F>) -> Vec<Result<(), DbError>>
    where
        F: Fn(&Connection) -> Result<(), rusqlite::Error> + Send + 'static,
    {
        let release = hold(w);
        let mut all = pin!(join_all(writes.into_iter().map(|f| w.write(f))));
        assert!(pending(all.as_mut()), "the writer is held");
        drop(release);
        all.await
    }

    #[tokio::test]
    async fn writes_that_wait_together_commit_in_one_transaction() {
        let w = writer();
        let answers = queued(&w, (1..=10).map(insert).collect()).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        assert_eq!(w.counts(), (10, 1), "ten writes, one commit");
        assert_eq!(rows(&w).await, (1..=10).collect::<Vec<_>>());

        // Alone, a write is its own batch.
        w.write(insert(11)).await.unwrap();
        assert_eq!(w.counts(), (11, 2));
    }

    #[tokio::test]
    async fn a_queued_write_is_answered_once_a_later_write_is() {
        let w = writer();
        let release = hold(&w);
        let first = w.queue(insert(1)).unwrap();
        // Work run alone between them puts the two writes in different batches.
        w.send(Job::Alone(Box::new(|_| {}))).unwrap();
        let mut second = pin!(w.write(insert(2)));
        assert!(pending(second.as_mut()), "the writer is held");
        drop(release);
        second.await.unwrap();
        let answer = first.answer().now_or_never();
        assert!(
            matches!(answer, Some(Ok(()))),
            "answered with the later write: {answer:?}"
        );
        assert_eq!(w.counts(), (2, 2), "two batches");
        assert_eq!(rows(&w).await, [1, 2]);
    }

    #[tokio::test]
    async fn a_failing_write_is_undone_alone_and_the_batch_commits() {
        let w = writer();
        let failing = |c: &Connection| {
            c.execute("INSERT INTO t (n) VALUES (100)", [])?;
            c.execute("INSERT INTO t (n) VALUES (NULL)", []).map(|_| ())
        };
        let writes: Vec<AnyWrite> =
            vec![Box::new(insert(1)), Box::new(failing), Box::new(insert(2))];
        let answers = queued(&w, writes).await;
        assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
        let err = answers[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("NOT NULL"), "{err}");
        assert_eq!(
            rows(&w).await,
            [1, 2],
            "the failing write's first row is undone"
        );
        assert_eq!(w.commits(), 1);
    }

    /// `insert(n)`, counting its runs in `runs`.
    fn counted(
        n: i64,
        runs: &Arc<AtomicU64>,
    ) -> impl Fn(&Connection) -> Result<(), rusqlite::Error> + Send + 'static {
        let runs = runs.clone();
        move |c| {
            runs.fetch_add(1, Ordering::SeqCst);
            insert(n)(c)
        }
    }

    #[tokio::test]
    async fn writes_run_once_and_without_savepoints_until_one_fails_then_again_under_savepoints() {
        let w = writer();
        let runs: Vec<Arc<AtomicU64>> = (0..4).map(|_| Arc::default()).collect();
        let ran = |runs: &[Arc<AtomicU64>]| -> Vec<u64> {
            runs.iter().map(|r| r.load(Ordering::SeqCst)).collect()
        };
        // No write fails: each runs once, outside any savepoint (rolling back to the savepoint
        // a write would have is an error).
        let outside = |c: &Connection| match c.execute_batch("ROLLBACK TO write") {
            Err(e) if e.to_string().contains("no such savepoint") => Ok(()),
            Err(e) => Err(e),
            Ok(()) => Err(rusqlite::Error::InvalidQuery),
        };
        let writes: Vec<AnyWrite> = vec![
            Box::new(counted(1, &runs[0])),
            Box::new(outside),
            Box::new(counted(2, &runs[1])),
        ];
        let answers = queued(&w, writes).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        assert_eq!(ran(&runs), [1, 1, 0, 0]);
        assert_eq!(w.rollbacks().count(), 0);

        // The third write fails after its first statement: the batch is rolled back once, and
        // the writes so far run again, each under its savepoint; the failed one is undone
        // alone, and the writes after it run once, under savepoints too.
        let fails_late = {
            let runs = runs[2].clone();
            move |c: &Connection| {
                runs.fetch_add(1, Ordering::SeqCst);
                c.execute("INSERT INTO t (n) VALUES (100)", [])?;
                c.execute("INSERT INTO t (n) VALUES (NULL)", []).map(|_| ())
            }
        };
        let writes: Vec<AnyWrite> = vec![
            Box::new(counted(3, &runs[0])),
            Box::new(counted(4, &runs[1])),
            Box::new(fails_late),
            Box::new(counted(5, &runs[3])),
            // Under its savepoint, or this fails.
            Box::new(|c: &Connection| c.execute_batch("ROLLBACK TO write")),
        ];
        let answers = queued(&w, writes).await;
        assert!(
            answers[2]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("NOT NULL")
        );
        for i in [0, 1, 3, 4] {
            assert!(answers[i].is_ok(), "{answers:?}");
        }
        assert_eq!(ran(&runs), [3, 3, 2, 1], "3 and 4 ran twice, 5 once");
        assert_eq!(w.rollbacks().count(), 1);
        assert_eq!(w.commits(), 2);
        assert_eq!(
            rows(&w).await,
            [1, 2, 3, 4, 5],
            "no row of the failed write"
        );
    }

    #[tokio::test]
    async fn a_commit_that_fails_fails_every_write_of_its_batch_and_writes_nothing() {
        let w = writer();
        let dangling = |c: &Connection| {
            c.execute("INSERT INTO child (parent) VALUES (7)", [])
                .map(|_| ())
        };
        let writes: Vec<AnyWrite> =
            vec![Box::new(insert(1)), Box::new(dangling), Box::new(insert(2))];
        let answers = queued(&w, writes).await;
        for answer in &answers {
            let err = answer.as_ref().unwrap_err().to_string();
            assert!(err.contains("FOREIGN KEY"), "{err}");
        }
        assert_eq!(rows(&w).await, Vec::<i64>::new());
        assert_eq!(w.commits(), 0);
        assert_eq!(w.rollbacks().count(), 1);

        // The writer goes on.
        w.write(insert(3)).await.unwrap();
        assert_eq!(rows(&w).await, [3]);
    }

    #[tokio::test]
    async fn a_panicking_write_fails_its_batch_and_the_writer_goes_on() {
        let w = writer();
        let panics = |_: &Connection| -> Result<(), rusqlite::Error> { panic!("a bug") };
        let writes: Vec<AnyWrite> =
            vec![Box::new(insert(1)), Box::new(panics), Box::new(insert(2))];
        let answers = queued(&w, writes).await;
        assert!(
            answers[0].is_err(),
            "written before the panic, in its batch: {answers:?}"
        );
        assert!(
            answers[1]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("panicked")
        );
        // The write after the panic was not in the rolled-back batch: it commits on its own.
        assert!(answers[2].is_ok(), "{answers:?}");
        assert_eq!(rows(&w).await, [2]);
        assert_eq!(w.rollbacks().count(), 1);

        let alone = w.run(|_| -> Result<(), rusqlite::Error> { panic!("a bug") });
        assert!(alone.await.unwrap_err().to_string().contains("panicked"));
        w.write(insert(3)).await.unwrap();
        assert_eq!(rows(&w).await, [2, 3]);
    }

    #[tokio::test]
    async fn work_sent_alone_runs_outside_batches_with_its_own_transaction() {
        let w = writer();
        let release = hold(&w);
        let mut first = pin!(w.write(insert(1)));
        assert!(pending(first.as_mut()));
        let mut own = pin!(w.run(|c| {
            let tx = c.unchecked_transaction()?;
            tx.execute("INSERT INTO t (n) VALUES (2)", [])?;
            tx.commit()
        }));
        assert!(pending(own.as_mut()));
        let mut last = pin!(w.write(insert(3)));
        assert!(pending(last.as_mut()));
        drop(release);
        first.await.unwrap();
        own.await.unwrap();
        last.await.unwrap();
        assert_eq!(rows(&w).await, [1, 2, 3]);
        assert_eq!(w.commits(), 2, "the work sent alone ended the first batch");
    }

    #[tokio::test]
    async fn a_write_cannot_open_its_own_transaction() {
        let w = writer();
        let err = w
            .write(|c| c.unchecked_transaction().map(|_| ()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("within a transaction"), "{err}");
    }
}
