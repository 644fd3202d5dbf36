//! Reads the definitions directory: which files count, following kubelet's ConfigMap
//! layout, and the source revision that identifies exactly what was read.
//!
//! Kubelet mounts a ConfigMap as `..<timestamp>/` holding the files, a `..data` symlink
//! to it, and one top-level symlink per key (`name.yaml -> ..data/name.yaml`); an
//! update writes a new timestamped folder and renames `..data` over the old link.
//! Entries starting with `.` are skipped, top-level symlinks are followed, and a
//! symlink whose target resolves outside the directory is refused without being read.
//!
//! This module reads files and hands their bytes to `definition`; it parses nothing.

use crate::definition::{self, DefinitionSet, MAX_FILE_BYTES, ParsedFile};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// `ELOOP`: too many levels of symbolic links.
#[cfg(target_os = "linux")]
const ELOOP: i32 = 40;
#[cfg(not(target_os = "linux"))]
const ELOOP: i32 = 62;

/// The most definition files one directory may hold.
pub const MAX_FILES: usize = 10_000;

/// What one read of the directory produced.
#[derive(Debug, Clone)]
pub struct Source {
    /// `sha256:<hex>` over the sorted (relative path, bytes) of the files read.
    pub revision: String,
    pub set: DefinitionSet,
}

/// The directory itself could not be read: the run must fail before any change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("definitions directory {0} does not exist")]
    Missing(PathBuf),
    #[error("definitions path {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("definitions directory {path} cannot be read: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One candidate file, before parsing.
struct Entry {
    /// Path relative to the directory, as shown in diagnostics.
    name: String,
    content: Result<Vec<u8>, String>,
}

/// Reads and parses every definition file in `dir`.
pub fn load(dir: &Path, now: DateTime<Utc>) -> Result<Source, Error> {
    let (entries, overflow) = read_entries(dir)?;
    let revision = revision(&entries);
    let mut files = parse_all(&entries, now);
    if let Some(total) = overflow {
        files.push(ParsedFile::unreadable(
            ".",
            format!("directory holds {total} definition files; the limit is {MAX_FILES}, the rest were not read"),
        ));
    }
    let mut set = DefinitionSet::assemble(files);
    if overflow.is_some() {
        // The pseudo-file above is not a real file.
        set.files -= 1;
    }
    Ok(Source { revision, set })
}

/// Parses every entry, spread over the available cores (parsing dominates a large
/// source), keeping the entries' order.
fn parse_all(entries: &[Entry], now: DateTime<Utc>) -> Vec<ParsedFile> {
    let parse = |e: &Entry| match &e.content {
        Ok(bytes) => definition::parse_file(&e.name, bytes, now),
        Err(message) => ParsedFile::unreadable(&e.name, message.clone()),
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if threads < 2 || entries.len() < 64 {
        return entries.iter().map(parse).collect();
    }
    let chunk = entries.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = entries
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(parse).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    })
}

/// Computes only the revision, reading the same files `load` would, without parsing.
/// The watcher uses it to decide whether anything changed.
pub fn revision_of(dir: &Path) -> Result<String, Error> {
    let (entries, _) = read_entries(dir)?;
    Ok(revision(&entries))
}

fn revision(entries: &[Entry]) -> String {
    let mut hash = Sha256::new();
    for e in entries {
        hash.update((e.name.len() as u64).to_be_bytes());
        hash.update(e.name.as_bytes());
        match &e.content {
            Ok(bytes) => {
                hash.update([1]);
                hash.update((bytes.len() as u64).to_be_bytes());
                hash.update(bytes);
            }
            Err(message) => {
                hash.update([0]);
                hash.update(message.as_bytes());
            }
        }
    }
    format!("sha256:{}", hex(&hash.finalize()))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

fn is_definition_name(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// Lists, resolves and reads the candidate files, sorted by name. The second value is
/// the total count when it exceeded [`MAX_FILES`].
fn read_entries(dir: &Path) -> Result<(Vec<Entry>, Option<usize>), Error> {
    let root = match dir.canonicalize() {
        Ok(root) => root,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Missing(dir.to_path_buf()));
        }
        Err(source) => {
            return Err(Error::Unreadable {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    if !root.is_dir() {
        return Err(Error::NotADirectory(dir.to_path_buf()));
    }
    let unreadable = |source| Error::Unreadable {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&root).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            tracing::debug!(name = ?name, "skipping a file whose name is not UTF-8");
            continue;
        };
        if is_definition_name(name) {
            names.push(name.to_string());
        } else {
            tracing::trace!(name, "skipping a file that is not a definition file");
        }
    }
    names.sort();
    let overflow = (names.len() > MAX_FILES).then_some(names.len());
    names.truncate(MAX_FILES);
    let mut entries = Vec::with_capacity(names.len());
    for name in names {
        match read_one(&root, &name) {
            Some(content) => entries.push(Entry { name, content }),
            None => continue,
        }
    }
    Ok((entries, overflow))
}

/// Reads one top-level entry. `None` means "not a definition file" (a directory or a
/// special file with a definition-like name), which is skipped with a debug log.
fn read_one(root: &Path, name: &str) -> Option<Result<Vec<u8>, String>> {
    let path = root.join(name);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        // Vanished between listing and reading (a kubelet swap in flight): the next
        // read sees the new state, and the revision differs.
        Err(e) => return Some(Err(format!("cannot be read: {e}"))),
    };
    let target = if meta.file_type().is_symlink() {
        match path.canonicalize() {
            Ok(t) => {
                if !t.starts_with(root) {
                    return Some(Err(format!(
                        "is a symlink to {}, outside the definitions directory; it was not read",
                        t.display()
                    )));
                }
                t
            }
            Err(e) if e.raw_os_error() == Some(ELOOP) => {
                return Some(Err("is a symlink loop; it was not read".to_string()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Some(Err("is a symlink whose target does not exist".to_string()));
            }
            Err(e) => return Some(Err(format!("cannot be resolved: {e}"))),
        }
    } else {
        path
    };
    let meta = match std::fs::metadata(&target) {
        Ok(m) => m,
        Err(e) => return Some(Err(format!("cannot be read: {e}"))),
    };
    if !meta.is_file() {
        tracing::debug!(name, "skipping an entry that is not a regular file");
        return None;
    }
    if meta.len() > MAX_FILE_BYTES {
        return Some(Err(format!(
            "file is {} bytes; the limit is {MAX_FILE_BYTES} (1 MiB, the ConfigMap limit)",
            meta.len()
        )));
    }
    let read = std::fs::File::open(&target).and_then(|f| {
        // Never trust the size from metadata: read at most one byte past the limit.
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
        Ok(bytes)
    });
    Some(match read {
        Ok(bytes) if bytes.len() as u64 > MAX_FILE_BYTES => Err(format!(
            "file is larger than {MAX_FILE_BYTES} bytes (1 MiB, the ConfigMap limit)"
        )),
        Ok(bytes) => Ok(bytes),
        Err(e) => Err(format!("cannot be read: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn revision_ignores_listing_order_and_mtime_but_not_content() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        fs::write(a.path().join("x.yaml"), "a: 1\n").unwrap();
        fs::write(a.path().join("y.yaml"), "b: 2\n").unwrap();
        // Written in the other order, later.
        fs::write(b.path().join("y.yaml"), "b: 2\n").unwrap();
        fs::write(b.path().join("x.yaml"), "a: 1\n").unwrap();
        let ra = revision_of(a.path()).unwrap();
        assert_eq!(ra, revision_of(b.path()).unwrap());
        assert!(ra.starts_with("sha256:") && ra.len() == 7 + 64);
        fs::write(b.path().join("x.yaml"), "a: 2\n").unwrap();
        assert_ne!(ra, revision_of(b.path()).unwrap());
        // A renamed file is a different source even with the same bytes.
        fs::rename(b.path().join("x.yaml"), b.path().join("z.yaml")).unwrap();
        fs::write(b.path().join("z.yaml"), "a: 1\n").unwrap();
        assert_ne!(ra, revision_of(b.path()).unwrap());
    }

    #[test]
    fn missing_directory_and_file_path_are_errors() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            load(&d.path().join("nope"), Utc::now()),
            Err(Error::Missing(_))
        ));
        let f = d.path().join("f.yaml");
        fs::write(&f, "").unwrap();
        assert!(matches!(load(&f, Utc::now()), Err(Error::NotADirectory(_))));
    }
}
