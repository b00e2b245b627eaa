//! A child's output: read as chunks the moment they arrive, written to the log files, and
//! passed on to whoever watches (readiness, the reporters). A watcher that has gone away does
//! not stop the logging.
//!
//! Memory stays flat however fast a child prints: each chunk passed on holds its share of the
//! stream's [`IN_FLIGHT`] budget until the last holder drops it — the watcher, or the reporter
//! its event reaches — and a drain reads no further ahead than that, so the child waits on its
//! pipe instead of the tool buffering what it prints. A watcher that closed its end is skipped
//! without waiting.
//!
//! Also the one way a file in the report directory is made ([`create_fresh`],
//! [`write_atomic`], [`copy_fresh`]): the directory is writable by the shard commands the run
//! starts, so a symbolic or hard link planted there must not make the tool write to the link's
//! target. A file is only ever created new (`O_CREAT | O_EXCL | O_NOFOLLOW`), never opened
//! because it exists; a file that is replaced as a whole goes through a temporary name nobody can
//! guess and a rename, which replaces a planted link instead of writing through it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::io::AsyncReadExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone)]
pub struct Chunk {
    pub stream: Stream,
    pub bytes: Bytes,
}

/// The bytes read from a stream at once, holding their share of its in-flight budget until
/// dropped. A clone holds none.
pub struct Bytes {
    data: Vec<u8>,
    _held: Option<OwnedSemaphorePermit>,
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl Clone for Bytes {
    fn clone(&self) -> Bytes {
        Bytes { data: self.data.clone(), _held: None }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes", self.data.len())
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(data: Vec<u8>) -> Bytes {
        Bytes { data, _held: None }
    }
}

/// The most of one stream's output read but not yet done with by whoever watches it.
pub const IN_FLIGHT: usize = 1024 * 1024;
/// The most read from a pipe at once.
const CHUNK: usize = 16 * 1024;

/// Creates `path` as a new file for appending. Refuses a path that exists already — a file of an
/// earlier run, or a link someone planted — saying which, so nothing is written through a link.
pub fn create_fresh(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| refused(path, e))
}

fn refused(path: &Path, e: std::io::Error) -> anyhow::Error {
    let meta = std::fs::symlink_metadata(path);
    match meta {
        Ok(m) if m.file_type().is_symlink() => {
            let target = std::fs::read_link(path)
                .map(|t| format!(" (to {})", t.display()))
                .unwrap_or_default();
            anyhow::anyhow!(
                "cannot create {}: it is a symbolic link{target}; harper-shard does not write through links in the report directory — remove it",
                path.display()
            )
        }
        Ok(_) if e.kind() == std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
            "cannot create {}: it already exists, and harper-shard writes report files only as new ones — remove it, or use a fresh --report-dir",
            path.display()
        ),
        _ => anyhow::Error::new(e).context(format!("cannot create {}", path.display())),
    }
}

/// Replaces `path` with `bytes` as a whole: written under a temporary name that cannot be
/// guessed, then renamed over it. A link at `path` is replaced, its target left alone.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = create_fresh(&tmp).and_then(|mut f| {
        f.write_all(bytes).with_context(|| format!("cannot write {}", tmp.display()))
    });
    let renamed = written.and_then(|()| {
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    });
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

/// Copies the file `from` to `to`, created new as by [`create_fresh`].
pub fn copy_fresh(from: &Path, to: &Path) -> anyhow::Result<()> {
    let mut source = File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    let mut dest = create_fresh(to)?;
    std::io::copy(&mut source, &mut dest)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Opens the log files, new ones: two, or one shared by both streams.
pub fn open_logs(stdout: &Path, stderr: Option<&Path>) -> anyhow::Result<(File, File)> {
    let open = |path: &Path| -> anyhow::Result<File> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        create_fresh(path).context("cannot open the log")
    };
    let out = open(stdout)?;
    let err = match stderr {
        Some(path) => open(path)?,
        None => out.try_clone().context("cannot share the log between stdout and stderr")?,
    };
    Ok((out, err))
}

/// Output that did not reach the log: how much of which stream, and the first error. Said by
/// the caller, who knows which log and whose output it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unlogged {
    pub stream: Stream,
    pub bytes: u64,
    pub error: String,
}

/// Reads `pipe` to its end into `log` and on to `watcher`; returns what could not be logged.
pub async fn drain(
    mut pipe: impl tokio::io::AsyncRead + Unpin,
    stream: Stream,
    mut log: File,
    watcher: mpsc::UnboundedSender<Chunk>,
) -> Option<Unlogged> {
    let budget = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut buf = vec![0u8; CHUNK];
    let mut unlogged: Option<Unlogged> = None;
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let bytes = &buf[..n];
                // A log that failed once (a full disk) is tried again with the next chunk.
                if let Err(e) = log.write_all(bytes) {
                    let missing = unlogged.get_or_insert_with(|| Unlogged {
                        stream,
                        bytes: 0,
                        error: e.to_string(),
                    });
                    missing.bytes += n as u64;
                }
                if watcher.is_closed() {
                    continue;
                }
                // `n` is at most CHUNK, far below what a semaphore counts.
                let held = tokio::select! {
                    held = budget.clone().acquire_many_owned(n as u32) => held.ok(),
                    () = watcher.closed() => None,
                };
                if held.is_some() {
                    let _ = watcher
                        .send(Chunk { stream, bytes: Bytes { data: bytes.to_vec(), _held: held } });
                }
            }
        }
    }
    unlogged
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hs-output-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn a_drain_reads_no_further_ahead_than_its_budget_and_logs_everything() {
        let dir = scratch();
        let log = create_fresh(&dir.join("out.log")).unwrap();
        let (mut writer, reader) = tokio::io::duplex(64 * 1024);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let drained = tokio::spawn(drain(reader, Stream::Stdout, log, tx));
        let total = 8 * IN_FLIGHT;
        let writing = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let block = vec![b'x'; CHUNK];
            for _ in 0..total / CHUNK {
                writer.write_all(&block).await.unwrap();
            }
        });
        // Nothing is taken: the drain stops at its budget, and so does the writer.
        let mut held = Vec::new();
        let mut in_flight = 0;
        while in_flight < IN_FLIGHT {
            let chunk = rx.recv().await.unwrap();
            in_flight += chunk.bytes.len();
            held.push(chunk);
        }
        assert_eq!(in_flight, IN_FLIGHT);
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err(), "a drain past its budget");
        assert!(!writing.is_finished());
        // Once what was read is dropped, everything flows, and all of it is in the log.
        drop(held);
        let mut rest = 0;
        while let Some(chunk) = rx.recv().await {
            rest += chunk.bytes.len();
        }
        writing.await.unwrap();
        drained.await.unwrap();
        assert_eq!(in_flight + rest, total);
        assert_eq!(std::fs::metadata(dir.join("out.log")).unwrap().len() as usize, total);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_closed_watcher_is_skipped_without_waiting() {
        let dir = scratch();
        let log = create_fresh(&dir.join("out.log")).unwrap();
        let (mut writer, reader) = tokio::io::duplex(64 * 1024);
        let (tx, mut rx) = mpsc::unbounded_channel();
        rx.close();
        let drained = tokio::spawn(drain(reader, Stream::Stdout, log, tx));
        use tokio::io::AsyncWriteExt;
        writer.write_all(&vec![b'y'; 4 * IN_FLIGHT]).await.unwrap();
        drop(writer);
        drained.await.unwrap();
        assert_eq!(std::fs::metadata(dir.join("out.log")).unwrap().len() as usize, 4 * IN_FLIGHT);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn output_the_log_refuses_is_counted_and_still_passed_on() {
        let dir = scratch();
        std::fs::write(dir.join("out.log"), "").unwrap();
        let read_only = File::open(dir.join("out.log")).unwrap();
        let (mut writer, reader) = tokio::io::duplex(64 * 1024);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let drained = tokio::spawn(drain(reader, Stream::Stderr, read_only, tx));
        use tokio::io::AsyncWriteExt;
        writer.write_all(b"first ").await.unwrap();
        let first = rx.recv().await.unwrap();
        writer.write_all(b"second").await.unwrap();
        drop(writer);
        let mut passed = first.bytes.to_vec();
        while let Some(chunk) = rx.recv().await {
            passed.extend_from_slice(&chunk.bytes);
        }
        assert_eq!(passed, b"first second", "the watcher gets everything");
        let unlogged = drained.await.unwrap().expect("the missing output is said");
        assert_eq!((unlogged.stream, unlogged.bytes), (Stream::Stderr, 12), "{unlogged:?}");
        assert!(unlogged.error.contains("Bad file descriptor"), "the first error: {unlogged:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_planted_link_is_refused_and_its_target_untouched() {
        let dir = scratch();
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let log = dir.join("command-1.log");
        std::os::unix::fs::symlink(&victim, &log).unwrap();
        let e = create_fresh(&log).unwrap_err().to_string();
        assert!(e.contains("is a symbolic link") && e.contains("victim"), "{e}");
        let hard = dir.join("command-2.log");
        std::fs::hard_link(&victim, &hard).unwrap();
        assert!(create_fresh(&hard).unwrap_err().to_string().contains("already exists"));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_atomic_write_replaces_a_link_and_leaves_its_target_alone() {
        let dir = scratch();
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let report = dir.join("report.json");
        std::os::unix::fs::symlink(&victim, &report).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("report.json.tmp")).unwrap();
        write_atomic(&report, b"{}").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!std::fs::symlink_metadata(&report).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&report).unwrap(), "{}");
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["report.json", "report.json.tmp", "victim"], "no temporary file is left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
