//! The spool: an append-only NDJSON file of events that could not be delivered yet, replayed in
//! order once sealtrail answers again.
//!
//! Layout in the spool directory: `spool.ndjson` (one event per line, appended and synced before
//! an event counts as spooled) and `spool.offset` (the byte offset of the first line not yet
//! delivered, replaced atomically). A crash can leave a torn last line, which is cut off at the
//! next open; it can also leave the offset behind the truth, and then delivered events are sent
//! again, which the server answers as duplicates because every event carries its id.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation failed.
    #[error("spool {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The spool is at its size cap.
    #[error("the spool is full ({0} bytes)")]
    Full(u64),
}

/// The spool files of one client.
pub(crate) struct Spool {
    dir: PathBuf,
    file: File,
    /// Bytes in `spool.ndjson`.
    len: u64,
    /// Offset of the first undelivered line.
    offset: u64,
    max_bytes: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Spool {
    /// Opens (creating) the spool in `dir`, cutting off a torn last line.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("spool.ndjson");
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut len = file.metadata().map_err(io(&path))?.len();
        // A line is complete when it ends with a newline; whatever follows the last one was
        // torn by a crash and never counted as spooled.
        if len > 0 {
            let mut reader = BufReader::new(File::open(&path).map_err(io(&path))?);
            let mut good = 0u64;
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = reader.read_until(b'\n', &mut line).map_err(io(&path))?;
                if n == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                good += n as u64;
            }
            if good < len {
                tracing::warn!(
                    torn_bytes = len - good,
                    "spool: cutting off a torn last line"
                );
                file.set_len(good).map_err(io(&path))?;
                file.sync_all().map_err(io(&path))?;
                len = good;
            }
        }
        let offset_path = dir.join("spool.offset");
        let offset = match std::fs::read_to_string(&offset_path) {
            Ok(text) => text.trim().parse::<u64>().unwrap_or(0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(&offset_path)(e)),
        };
        let mut spool = Self {
            dir: dir.to_owned(),
            file,
            len,
            offset: offset.min(len),
            max_bytes,
        };
        if spool.offset >= spool.len && spool.len > 0 {
            spool.reset()?;
        }
        Ok(spool)
    }

    /// Whether anything waits to be delivered.
    pub(crate) fn is_empty(&self) -> bool {
        self.offset >= self.len
    }

    /// Bytes waiting.
    pub(crate) fn pending_bytes(&self) -> u64 {
        self.len - self.offset
    }

    /// Appends events (JSON lines) and syncs them; all or none when the cap would be passed.
    pub(crate) fn append(&mut self, lines: &[String]) -> Result<(), SpoolError> {
        let bytes: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        if self.len + bytes > self.max_bytes {
            return Err(SpoolError::Full(self.max_bytes));
        }
        let path = self.dir.join("spool.ndjson");
        let mut buf = Vec::with_capacity(bytes as usize);
        for line in lines {
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
        }
        self.file.write_all(&buf).map_err(io(&path))?;
        self.file.sync_data().map_err(io(&path))?;
        self.len += bytes;
        Ok(())
    }

    /// Up to `max` undelivered lines from the head, with the offset after them.
    pub(crate) fn peek(&self, max: usize) -> Result<(Vec<String>, u64), SpoolError> {
        let path = self.dir.join("spool.ndjson");
        let mut file = File::open(&path).map_err(io(&path))?;
        file.seek(SeekFrom::Start(self.offset)).map_err(io(&path))?;
        let mut reader = BufReader::new(file);
        let mut lines = Vec::new();
        let mut end = self.offset;
        while lines.len() < max && end < self.len {
            let mut line = String::new();
            let n = reader.read_line(&mut line).map_err(io(&path))?;
            if n == 0 {
                break;
            }
            end += n as u64;
            lines.push(line.trim_end_matches('\n').to_owned());
        }
        Ok((lines, end))
    }

    /// Marks everything before `offset` delivered; empties the files once all is.
    pub(crate) fn consume(&mut self, offset: u64) -> Result<(), SpoolError> {
        self.offset = offset.min(self.len);
        if self.is_empty() {
            return self.reset();
        }
        let path = self.dir.join("spool.offset");
        let tmp = self.dir.join("spool.offset.tmp");
        std::fs::write(&tmp, self.offset.to_string()).map_err(io(&tmp))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Empties the spool: the events file first, so a crash in between leaves an offset past
    /// the end, which the next open reads as "all delivered".
    fn reset(&mut self) -> Result<(), SpoolError> {
        let path = self.dir.join("spool.ndjson");
        self.file.set_len(0).map_err(io(&path))?;
        self.file.sync_all().map_err(io(&path))?;
        let offset_path = self.dir.join("spool.offset");
        match std::fs::remove_file(&offset_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&offset_path)(e)),
        }
        self.len = 0;
        self.offset = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: std::ops::Range<u32>) -> Vec<String> {
        n.map(|i| format!("{{\"n\":{i}}}")).collect()
    }

    #[test]
    fn lines_come_back_in_order_across_reopen_and_partial_delivery() {
        let dir = tempfile::tempdir().expect("dir");
        let mut spool = Spool::open(dir.path(), 1 << 20).expect("open");
        assert!(spool.is_empty());
        spool.append(&lines(0..5)).expect("append");
        let (head, end) = spool.peek(2).expect("peek");
        assert_eq!(head, lines(0..2));
        spool.consume(end).expect("consume");
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1 << 20).expect("reopen");
        spool.append(&lines(5..7)).expect("append");
        let (rest, end) = spool.peek(100).expect("peek");
        assert_eq!(rest, lines(2..7));
        spool.consume(end).expect("consume");
        assert!(spool.is_empty());
        let size = std::fs::metadata(dir.path().join("spool.ndjson"))
            .expect("meta")
            .len();
        assert_eq!(size, 0, "a fully delivered spool is emptied");
    }

    #[test]
    fn a_torn_last_line_is_cut_off_at_open() {
        let dir = tempfile::tempdir().expect("dir");
        let mut spool = Spool::open(dir.path(), 1 << 20).expect("open");
        spool.append(&lines(0..3)).expect("append");
        drop(spool);
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join("spool.ndjson"))
            .expect("file");
        file.write_all(b"{\"n\":99").expect("torn write");
        let spool = Spool::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(spool.peek(100).expect("peek").0, lines(0..3));
    }

    #[test]
    fn the_cap_refuses_what_would_pass_it_and_keeps_what_is_there() {
        let dir = tempfile::tempdir().expect("dir");
        let mut spool = Spool::open(dir.path(), 20).expect("open");
        spool.append(&lines(0..2)).expect("16 bytes fit");
        assert!(matches!(
            spool.append(&lines(2..3)),
            Err(SpoolError::Full(20))
        ));
        assert_eq!(spool.pending_bytes(), 16);
        assert_eq!(spool.peek(10).expect("peek").0, lines(0..2));
    }

    #[test]
    fn an_offset_past_the_end_after_a_crash_means_all_delivered() {
        let dir = tempfile::tempdir().expect("dir");
        let mut spool = Spool::open(dir.path(), 1 << 20).expect("open");
        spool.append(&lines(0..3)).expect("append");
        let (_, end) = spool.peek(1).expect("peek");
        spool.consume(end).expect("consume");
        drop(spool);
        // A crash between emptying the events file and removing the offset.
        std::fs::write(dir.path().join("spool.ndjson"), "").expect("truncate");
        let spool = Spool::open(dir.path(), 1 << 20).expect("reopen");
        assert!(spool.is_empty());
    }
}
