//! Report files written whole or not at all: each goes to a temporary file in its own folder,
//! then is renamed over the path asked for, so that a run killed while writing (`docker stop`
//! ends in SIGKILL 10 s after its SIGTERM), a second signal, or a run refused before its first
//! request never leaves a 0-byte or half-written report behind (issue 22). The rename is atomic
//! only within one file system, hence the temporary file beside the target, not in `/tmp`.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The folder a file named `path` goes in (`.` for a bare file name).
fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// A new temporary file in `folder`, hidden and named after `name`, with the permissions a
/// plain `File::create` gives (0666 less the umask), not tempfile's 0600: a report written by
/// a container's root must stay readable on the host.
fn temporary_in(folder: &Path, name: &str) -> std::io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(folder)
}

/// Writes `bytes` to `path` atomically: readers see the old file or the whole new one.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map_or_else(|| "report".into(), |n| n.to_string_lossy());
    let mut file = temporary_in(&folder_of(path), &name)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Checks, leaving no trace, that [`write`] can put a file at `path`: its folder exists and
/// takes a new file, and `path` is not a folder. The message names what to fix.
pub fn check_writable(path: &Path) -> Result<(), String> {
    let folder = folder_of(path);
    if !folder.is_dir() {
        return Err(format!(
            "the folder {} does not exist: create it first",
            folder.display()
        ));
    }
    if path.is_dir() {
        return Err("is a folder; give a file name".into());
    }
    // Dropped at once: the probe is deleted.
    temporary_in(&folder, "loadgen-probe")
        .map(drop)
        .map_err(|e| format!("cannot be written in {}: {e}", folder.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(folder: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_the_file_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        std::fs::write(&path, "old and longer than the new").unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(names_in(dir.path()), ["report.json"]);
    }

    #[test]
    fn keeps_the_permissions_of_a_plain_create() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        let atomic = dir.path().join("atomic");
        write(&atomic, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&atomic), mode(&plain));
    }

    #[test]
    fn the_check_leaves_nothing_and_names_a_missing_folder() {
        let dir = tempfile::tempdir().unwrap();
        check_writable(&dir.path().join("report.json")).unwrap();
        assert!(names_in(dir.path()).is_empty());
        let error = check_writable(&dir.path().join("no/such/report.json")).unwrap_err();
        assert!(error.contains("no/such does not exist"), "{error}");
        let error = check_writable(dir.path()).unwrap_err();
        assert!(error.contains("is a folder"), "{error}");
    }
}
