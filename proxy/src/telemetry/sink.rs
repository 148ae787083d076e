//! Where log lines go: stdout, or a file rotated by size.
//!
//! A rotated file keeps its name; when a write would take it past the size, it is renamed
//! `<name>.1` (an older `.1` becomes `.2`, and so on; the oldest beyond `keep` is removed) and a
//! new file is opened. Writes are whole buffers of whole lines, so a line is never split across
//! files and none is lost in a rotation.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Rotation of a log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Bytes a file reaches before it is rotated (at a line boundary).
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: usize,
}

pub enum Sink {
    Stdout,
    File(RotatingFile),
}

impl Sink {
    /// `path`, or stdout when `None`.
    pub fn open(path: Option<&Path>, rotation: Rotation) -> std::io::Result<Sink> {
        Ok(match path {
            None => Sink::Stdout,
            Some(p) => Sink::File(RotatingFile::open(p, rotation)?),
        })
    }

    /// Write `lines` (whole lines); errors are the caller's to count or ignore.
    pub fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(lines)?;
                out.flush()
            }
            Sink::File(f) => f.write(lines),
        }
    }
}

pub struct RotatingFile {
    path: PathBuf,
    rotation: Rotation,
    file: File,
    size: u64,
}

impl RotatingFile {
    /// Open `path` for appending (its directory must exist).
    pub fn open(path: &Path, rotation: Rotation) -> std::io::Result<RotatingFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            rotation,
            file,
            size,
        })
    }

    pub fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + lines.len() as u64 > self.rotation.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(lines)?;
        self.size += lines.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        let numbered = |n: usize| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        let keep = self.rotation.keep.max(1);
        let _ = std::fs::remove_file(numbered(keep));
        for n in (1..keep).rev() {
            let from = numbered(n);
            if from.exists() {
                std::fs::rename(&from, numbered(n + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(1))?;
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_every_line_whole_and_the_newest_files() {
        let dir = std::env::temp_dir().join(format!("tollgate-sink-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let mut f = RotatingFile::open(
            &path,
            Rotation {
                max_bytes: 100,
                keep: 50,
            },
        )
        .unwrap();
        for i in 0..200 {
            f.write(format!("line {i:04}\n").as_bytes()).unwrap();
        }
        let mut lines = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            assert!(text.len() <= 100);
            lines.extend(text.lines().map(str::to_string));
        }
        lines.sort();
        assert_eq!(lines, (0..200).map(|i| format!("line {i:04}")).collect::<Vec<_>>());
        // Only `keep` rotated files stay: the oldest lines go first.
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let mut f = RotatingFile::open(
            &path,
            Rotation {
                max_bytes: 100,
                keep: 2,
            },
        )
        .unwrap();
        for i in 0..50 {
            f.write(format!("more {i:04}\n").as_bytes()).unwrap();
        }
        assert!(dir.join("access.log.2").exists());
        assert!(!dir.join("access.log.3").exists());
        let newest = std::fs::read_to_string(&path).unwrap();
        assert!(newest.ends_with("more 0049\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
