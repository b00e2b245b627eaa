//! A child's output: read as chunks the moment they arrive, written to the log files, and
//! passed on to whoever watches (readiness, the reporters). A watcher that has gone away does
//! not stop the logging.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone)]
pub struct Chunk {
    pub stream: Stream,
    pub bytes: Vec<u8>,
}

/// Opens the log files: two, or one shared by both streams.
pub fn open_logs(stdout: &Path, stderr: Option<&Path>) -> anyhow::Result<(File, File)> {
    let open = |path: &Path| -> anyhow::Result<File> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the log {}", path.display()))
    };
    let out = open(stdout)?;
    let err = match stderr {
        Some(path) => open(path)?,
        None => out.try_clone().context("cannot share the log between stdout and stderr")?,
    };
    Ok((out, err))
}

pub async fn drain(
    mut pipe: impl tokio::io::AsyncRead + Unpin,
    stream: Stream,
    mut log: File,
    watcher: mpsc::UnboundedSender<Chunk>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let bytes = &buf[..n];
                if let Err(e) = log.write_all(bytes) {
                    tracing::warn!("cannot write a child's output to its log: {e}");
                }
                let _ = watcher.send(Chunk { stream, bytes: bytes.to_vec() });
            }
        }
    }
}
