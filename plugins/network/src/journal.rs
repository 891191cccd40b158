//! A node's journal: the items and votes it took in, so that it restarts with the state it had.
//!
//! Everything a node adds to its [`NetworkState`](crate::state::NetworkState) is appended here; a restarted node
//! replays the journal (each signature checked again) and needs its peers only for what it missed while down — a
//! lone validator loses nothing. A validator's own votes are flushed to disk before they are sent: the FastPay
//! construction is safe only if an honest validator never votes on two items with one account and sequence number,
//! also across a crash; a journaled vote that never reached anyone is served to peers when they pull.
//!
//! Format: records of a 4-byte little-endian length and a postcard-encoded [`Entry`]. A record cut short by a crash
//! in the middle of an append is dropped and the file truncated to the last whole record (an own vote is flushed
//! before it is sent, so a torn one was never sent).

use crate::error::{NetworkError, Result};
use crate::protocol::{SignedItem, Vote};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Largest record accepted when reading (a proposal of 100 patterns is well under this).
const MAX_RECORD: usize = 16 * 1024 * 1024;

/// One journal record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Entry {
    /// An item the node took in.
    Item(SignedItem),
    /// A vote the node took in or cast.
    Vote(Vote),
}

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Opens (creating, mode 0600) the journal at `path` and returns it with its records, oldest first.
    pub fn open(path: &Path) -> Result<(Self, Vec<Entry>)> {
        let io = |e: std::io::Error| NetworkError::io(path, e);
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        let mut entries = Vec::new();
        let mut at = 0;
        while let Some(header) = bytes.get(at..at + 4) {
            let len = u32::from_le_bytes(header.try_into().expect("4 bytes")) as usize;
            let Some(record) = bytes.get(at + 4..at + 4 + len).filter(|_| len <= MAX_RECORD) else { break };
            let entry: Entry = postcard::from_bytes(record)
                .map_err(|e| NetworkError::Encoding(format!("{}: journal record at byte {at}: {e}", path.display())))?;
            entries.push(entry);
            at += 4 + len;
        }
        let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(io)?;
        if at < bytes.len() {
            file.set_len(at as u64).map_err(io)?;
        }
        Ok((Self { path: path.to_owned(), file }, entries))
    }

    /// Appends `entry`; with `durable`, flushes it to disk before returning.
    pub fn append(&mut self, entry: &Entry, durable: bool) -> Result<()> {
        let record = postcard::to_stdvec(entry).map_err(|e| NetworkError::Encoding(e.to_string()))?;
        let mut buf = Vec::with_capacity(4 + record.len());
        buf.extend_from_slice(&(record.len() as u32).to_le_bytes());
        buf.extend_from_slice(&record);
        let io = |e: std::io::Error| NetworkError::io(&self.path, e);
        self.file.write_all(&buf).map_err(io)?;
        if durable {
            self.file.sync_data().map_err(io)?;
        }
        Ok(())
    }
}
