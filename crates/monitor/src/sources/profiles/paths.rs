//! A frame's file as a developer recognises it: the application's own files relative to the
//! process's working folder (`app/auth.py`), a library's below its `site-packages`
//! (`bcrypt/__init__.py`), the standard library's below its folder (`asyncio/base_events.py`),
//! each of the last two marked as library code.

/// The file to show for `path`, and whether it is library code, for a process whose working
/// folder is `cwd` (as that process sees it: a container's paths are the container's).
pub fn shorten(path: &str, cwd: Option<&str>) -> (String, bool) {
    for marker in ["/site-packages/", "/dist-packages/"] {
        if let Some(at) = path.rfind(marker) {
            return (path[at + marker.len()..].to_owned(), true);
        }
    }
    // `<frozen importlib._bootstrap>`, `<string>`: not a file anyone edits.
    if path.starts_with('<') {
        return (path.to_owned(), true);
    }
    if let Some(rest) = stdlib_relative(path) {
        return (rest.to_owned(), true);
    }
    if let Some(cwd) = cwd.filter(|c| !c.is_empty() && *c != "/")
        && let Some(rest) = path.strip_prefix(cwd)
        && let Some(rest) = rest.strip_prefix('/')
    {
        return (rest.to_owned(), false);
    }
    (path.to_owned(), false)
}

/// What follows `/lib/pythonX.Y/` (or `/Lib/` of a Windows layout), the standard library.
fn stdlib_relative(path: &str) -> Option<&str> {
    let at = path.find("/lib/python")?;
    let after = &path[at + "/lib/python".len()..];
    let slash = after.find('/')?;
    let version = &after[..slash];
    let is_version = !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.');
    is_version.then(|| &after[slash + 1..])
}

#[cfg(test)]
mod tests {
    use super::shorten;

    #[test]
    fn application_library_and_stdlib_files_are_told_apart() {
        let cwd = Some("/srv/api");
        assert_eq!(
            shorten("/srv/api/app/auth.py", cwd),
            ("app/auth.py".into(), false)
        );
        assert_eq!(
            shorten(
                "/srv/api/.venv/lib/python3.11/site-packages/bcrypt/__init__.py",
                cwd
            ),
            ("bcrypt/__init__.py".into(), true)
        );
        assert_eq!(
            shorten("/usr/lib/python3.11/asyncio/base_events.py", cwd),
            ("asyncio/base_events.py".into(), true)
        );
        assert_eq!(
            shorten("<frozen importlib._bootstrap>", cwd),
            ("<frozen importlib._bootstrap>".into(), true)
        );
        // Outside the working folder, the path stays whole; a folder named like it is not it.
        assert_eq!(
            shorten("/srv/api2/main.py", cwd),
            ("/srv/api2/main.py".into(), false)
        );
        assert_eq!(
            shorten("/app/main.py", Some("/")),
            ("/app/main.py".into(), false)
        );
    }
}
