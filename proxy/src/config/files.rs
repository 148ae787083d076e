//! Finding and reading the files a config names (secrets, CA bundles, tokenizer files): paths
//! relative to the config file, and only regular files of a bounded size, so a path that names a
//! device, a pipe or a directory (`/dev/zero`, `/dev/stdin`) is refused with a message instead of
//! blocking a load or a `tollgate check`.

use std::path::{Path, PathBuf};

/// Where a path written in the config points: relative to the config file's folder
/// (`base_dir`), or as written when absolute or when the config has no file.
pub fn resolve(base_dir: Option<&Path>, file: &str) -> PathBuf {
    match base_dir {
        Some(dir) if Path::new(file).is_relative() => dir.join(file),
        _ => PathBuf::from(file),
    }
}

/// The bytes of `path`, a regular file of at most `max_bytes`.
pub fn read(path: &Path, max_bytes: u64) -> Result<Vec<u8>, String> {
    check(path, max_bytes)?;
    std::fs::read(path).map_err(|e| e.to_string())
}

/// Whether `path` is a regular file of at most `max_bytes` (symlinks followed).
pub fn check(path: &Path, max_bytes: u64) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".to_string());
    }
    if meta.len() > max_bytes {
        return Err(format!("{} bytes, more than the {max_bytes} allowed", meta.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_directories_and_large_files_are_refused() {
        assert_eq!(
            read(Path::new("/dev/zero"), 1 << 20),
            Err("not a regular file".to_string())
        );
        assert_eq!(check(Path::new("/"), 1 << 20), Err("not a regular file".to_string()));
        let path = std::env::temp_dir().join(format!("tollgate-files-{}", std::process::id()));
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read(&path, 10), Ok(b"0123456789".to_vec()));
        assert!(read(&path, 9)
            .unwrap_err()
            .contains("10 bytes, more than the 9 allowed"));
        let _ = std::fs::remove_file(&path);
    }
}
