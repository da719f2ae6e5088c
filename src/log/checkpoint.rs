//! Small files replaced atomically: write `<name>.tmp`, fsync it, rename over `<name>`, fsync the directory
//! (the fsyncs only when the log is configured to fsync).
//!
//! Offset checkpoints (`recovery-point`, `log-start-offset`) hold a version line `0` and one offset line.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point";
pub(crate) const LOG_START_OFFSET_FILE: &str = "log-start-offset";
pub(crate) const TMP_SUFFIX: &str = ".tmp";
/// Checkpoint files are tiny; anything larger is damaged and ignored.
const CHECKPOINT_MAX_BYTES: u64 = 1 << 20;

pub(crate) fn write_atomic(path: &Path, data: &[u8], fsync: bool) -> io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(TMP_SUFFIX);
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        f.write_all(data)?;
        if fsync {
            f.sync_all()?;
        }
    }
    fs::rename(&tmp, path)?;
    if fsync {
        if let Some(dir) = path.parent() {
            fsync_dir(dir)?;
        }
    }
    Ok(())
}

pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads a small text file, None if missing, too large or unreadable.
pub(crate) fn read_small(path: &Path) -> Option<String> {
    let meta = fs::metadata(path).ok()?;
    if meta.len() > CHECKPOINT_MAX_BYTES {
        tracing::warn!(file = %path.display(), "ignoring oversized checkpoint file");
        return None;
    }
    fs::read_to_string(path).ok()
}

pub(crate) fn write_offset(dir: &Path, name: &str, offset: i64, fsync: bool) -> io::Result<()> {
    write_atomic(&dir.join(name), format!("0\n{offset}\n").as_bytes(), fsync)
}

/// The offset in a checkpoint file; None (with a warning when present but damaged) otherwise.
pub(crate) fn read_offset(dir: &Path, name: &str) -> Option<i64> {
    let path = dir.join(name);
    let text = read_small(&path)?;
    let mut lines = text.lines();
    let parsed = match (lines.next(), lines.next(), lines.next()) {
        (Some("0"), Some(v), None) => v.trim().parse::<i64>().ok().filter(|v| *v >= 0),
        _ => None,
    };
    if parsed.is_none() {
        tracing::warn!(file = %path.display(), "ignoring damaged checkpoint file");
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_checkpoint_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_offset(dir.path(), RECOVERY_POINT_FILE), None);
        write_offset(dir.path(), RECOVERY_POINT_FILE, 42, true).unwrap();
        assert_eq!(read_offset(dir.path(), RECOVERY_POINT_FILE), Some(42));
        fs::write(dir.path().join(RECOVERY_POINT_FILE), "garbage").unwrap();
        assert_eq!(read_offset(dir.path(), RECOVERY_POINT_FILE), None);
        assert!(!dir.path().join("recovery-point.tmp").exists());
    }
}
