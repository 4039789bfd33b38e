//! The tunnel's image, made on this machine because no image can be pulled: FROM scratch, the
//! running executable (loadgen or monitor, whichever opens the tunnel) with the dynamic loader
//! and the shared libraries it has mapped, as `docker/build.sh` makes the release images. It is
//! tagged by a hash of its content, built through the Docker API once, and reused after that.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, ListImagesOptionsBuilder, RemoveImageOptions,
};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};

/// The image repository; each tag is `<executable>-<content hash>`.
pub const REPOSITORY: &str = "loadtest/stack-tunnel";

/// How many hex digits of the content's SHA-256 the tag keeps.
const HASH_DIGITS: usize = 16;

/// Changes whenever the image's layout changes, so that an old image is not reused.
const LAYOUT_VERSION: &str = "stack-tunnel 1";

/// Why the image could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file that goes into the image could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The executable's libraries could not be listed.
    #[error("cannot list the shared libraries of {path} with ldd: {detail}")]
    Libraries {
        /// The executable.
        path: PathBuf,
        /// What ldd said, or why it did not run.
        detail: String,
    },
    /// The engine did not build it.
    #[error("the Docker engine did not build {tag}: {detail}")]
    Build {
        /// The image's tag.
        tag: String,
        /// The engine's message.
        detail: String,
    },
}

/// What goes into the image: the executable, the loader that runs it, and its libraries.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Contents {
    /// Where to read the executable (`/proc/self/exe` for the running one).
    executable: PathBuf,
    /// Its name in the image, under `/bin`.
    name: String,
    /// The dynamic loader, at its own path (none for a static executable).
    loader: Option<PathBuf>,
    /// The shared libraries, each at its own path.
    libraries: Vec<PathBuf>,
}

impl Contents {
    /// The running executable, with the libraries this process has mapped: no `ldd` needed, so
    /// it also works in our FROM-scratch images, and a binary rebuilt since it started is still
    /// the one that runs.
    fn running() -> Result<Self, ImageError> {
        let maps_path = Path::new("/proc/self/maps");
        let maps = std::fs::read_to_string(maps_path).map_err(|error| ImageError::Read {
            path: maps_path.to_owned(),
            error,
        })?;
        let name = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .map(|n| n.trim_end_matches(" (deleted)").to_owned());
        Ok(Self::new(
            PathBuf::from("/proc/self/exe"),
            name,
            libraries_in_maps(&maps),
        ))
    }

    /// Another executable (a test's `monitor` binary), with the libraries `ldd` lists.
    fn of(executable: &Path) -> Result<Self, ImageError> {
        let failed = |detail: String| ImageError::Libraries {
            path: executable.to_owned(),
            detail,
        };
        let output = std::process::Command::new("ldd")
            .arg(executable)
            .output()
            .map_err(|e| failed(e.to_string()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        // A static executable: ldd says so and fails, and it needs nothing more.
        let libraries = if output.status.success() {
            libraries_in_ldd(&stdout)
        } else if String::from_utf8_lossy(&output.stderr).contains("not a dynamic executable")
            || stdout.contains("not a dynamic executable")
        {
            Vec::new()
        } else {
            return Err(failed(
                String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            ));
        };
        let name = executable
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        Ok(Self::new(executable.to_owned(), name, libraries))
    }

    fn new(executable: PathBuf, name: Option<String>, mut libraries: Vec<PathBuf>) -> Self {
        let is_loader = |path: &PathBuf| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ld-"))
        };
        let loader = libraries
            .iter()
            .position(is_loader)
            .map(|i| libraries.remove(i));
        // A tag and a file name both: letters, digits, `.`, `_` and `-` only.
        let name: String = name
            .unwrap_or_default()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect();
        let name = if name.trim_matches(['.', '-']).is_empty() {
            "loadtest".to_owned()
        } else {
            name
        };
        Self {
            executable,
            name,
            loader,
            libraries,
        }
    }

    fn binary_in_image(&self) -> String {
        format!("/bin/{}", self.name)
    }

    /// The command that runs the executable: through the loader named explicitly, with the
    /// libraries' folders as its search path, so that neither the executable's own loader path
    /// (often a symbolic link on the host) nor an `ld.so.cache` has to exist in the image.
    fn entrypoint(&self) -> Vec<String> {
        match &self.loader {
            Some(loader) => {
                let folders: BTreeSet<String> = self
                    .libraries
                    .iter()
                    .filter_map(|l| l.parent())
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect();
                vec![
                    loader.to_string_lossy().into_owned(),
                    "--library-path".to_owned(),
                    folders.into_iter().collect::<Vec<_>>().join(":"),
                    self.binary_in_image(),
                ]
            }
            None => vec![self.binary_in_image()],
        }
    }

    fn dockerfile(&self) -> String {
        let entrypoint = serde_json::to_string(&self.entrypoint()).unwrap_or_default();
        format!(
            "FROM scratch\nCOPY . /\nLABEL {}=1\nENTRYPOINT {entrypoint}\n",
            super::LABEL
        )
    }

    /// Each file: where to read it, and its path in the image (relative, as in the tar).
    fn files(&self) -> Vec<(PathBuf, PathBuf)> {
        let mut files = vec![(
            self.executable.clone(),
            PathBuf::from(format!("bin/{}", self.name)),
        )];
        for library in self.loader.iter().chain(&self.libraries) {
            if let Ok(relative) = library.strip_prefix("/") {
                files.push((library.clone(), relative.to_owned()));
            }
        }
        files
    }

    /// The tag: the executable's name and a hash of everything that goes into the image.
    fn tag(&self) -> Result<String, ImageError> {
        let mut hash = Sha256::new();
        hash.update(LAYOUT_VERSION);
        hash.update(self.dockerfile());
        let mut buffer = vec![0u8; 1 << 20];
        for (source, target) in self.files() {
            hash.update(target.to_string_lossy().as_bytes());
            let read = |error| ImageError::Read {
                path: source.clone(),
                error,
            };
            let mut file = std::fs::File::open(&source).map_err(read)?;
            loop {
                let n = file.read(&mut buffer).map_err(read)?;
                if n == 0 {
                    break;
                }
                hash.update(&buffer[..n]);
            }
        }
        let digest: String = hash.finalize()[..HASH_DIGITS / 2]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(format!("{REPOSITORY}:{}-{digest}", self.name))
    }
}

/// The shared libraries (the loader among them) in a `/proc/PID/maps`.
fn libraries_in_maps(maps: &str) -> Vec<PathBuf> {
    let mut seen = BTreeSet::new();
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.starts_with('/') && is_shared_library(path))
        .filter(|path| seen.insert(path.to_owned()))
        .map(PathBuf::from)
        .collect()
}

/// The libraries (the loader among them) in `ldd`'s output, as `docker/build.sh` reads it.
fn libraries_in_ldd(output: &str) -> Vec<PathBuf> {
    let mut seen = BTreeSet::new();
    output
        .split_whitespace()
        .filter(|word| word.starts_with('/'))
        .filter(|path| seen.insert(path.to_owned()))
        .map(PathBuf::from)
        .collect()
}

fn is_shared_library(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.ends_with(".so") || name.contains(".so.")
}

/// The executables hashed in this process (`None`: the running one), with their image's tag.
static HASHED: tokio::sync::Mutex<Vec<(Option<PathBuf>, Contents, String)>> =
    tokio::sync::Mutex::const_new(Vec::new());

/// The tunnel image for `executable` (the running one if `None`): its tag, once built or found.
pub async fn ensure(docker: &Docker, executable: Option<&Path>) -> Result<String, ImageError> {
    // One at a time, so that two tunnels opened together hash and build once.
    let mut hashed = HASHED.lock().await;
    let known = hashed.iter().find(|(e, ..)| e.as_deref() == executable);
    let (contents, tag) = match known {
        Some((_, contents, tag)) => (contents.clone(), tag.clone()),
        None => {
            let owned = executable.map(Path::to_owned);
            let (contents, tag) = tokio::task::spawn_blocking(move || {
                let contents = match &owned {
                    Some(path) => Contents::of(path)?,
                    None => Contents::running()?,
                };
                let tag = contents.tag()?;
                Ok::<_, ImageError>((contents, tag))
            })
            .await
            .map_err(|e| ImageError::Build {
                tag: REPOSITORY.to_owned(),
                detail: e.to_string(),
            })??;
            hashed.push((
                executable.map(Path::to_owned),
                contents.clone(),
                tag.clone(),
            ));
            (contents, tag)
        }
    };
    // Asked each time: another build of the same executable (another worktree's) may have
    // replaced it since.
    if docker.inspect_image(&tag).await.is_err() {
        build(docker, &contents, &tag).await?;
        remove_older(docker, &contents, &tag).await;
    }
    Ok(tag)
}

async fn build(docker: &Docker, contents: &Contents, tag: &str) -> Result<(), ImageError> {
    let failed = |detail: String| ImageError::Build {
        tag: tag.to_owned(),
        detail,
    };
    // The context is streamed as it is written: a debug build's executable is large.
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    let writing = {
        let (contents, sender) = (contents.clone(), sender.clone());
        tokio::task::spawn_blocking(move || {
            let result = write_context(&contents, ChannelWriter(sender.clone()));
            if let Err(error) = &result {
                let _ = sender.blocking_send(Err(std::io::Error::other(error.to_string())));
            }
            result
        })
    };
    drop(sender);
    let body = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    let options = BuildImageOptionsBuilder::new()
        .t(tag)
        .rm(true)
        .forcerm(true)
        .build();
    let mut progress = docker.build_image(options, None, Some(bollard::body_try_stream(body)));
    let mut engine_error = None;
    while let Some(step) = progress.next().await {
        match step {
            Ok(info) => {
                if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                    engine_error = Some(detail);
                }
            }
            Err(error) => engine_error = Some(error.to_string()),
        }
    }
    // What the context writer met comes first: the engine's error is then only its echo.
    match writing.await {
        Ok(Err(error)) => return Err(error),
        Err(error) => return Err(failed(error.to_string())),
        Ok(Ok(())) => {}
    }
    if let Some(detail) = engine_error {
        return Err(failed(detail));
    }
    docker
        .inspect_image(tag)
        .await
        .map(drop)
        .map_err(|e| failed(format!("built, then not found: {e}")))
}

/// Writes the build context (the files, a Dockerfile) as a tar.
fn write_context(contents: &Contents, out: ChannelWriter) -> Result<(), ImageError> {
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |error| ImageError::Read { path, error }
    };
    let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 18, out));
    let files = contents.files();
    let folders: BTreeSet<PathBuf> = files
        .iter()
        .flat_map(|(_, target)| target.ancestors().skip(1).map(Path::to_owned))
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    for folder in &folders {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        tar.append_data(&mut header, folder, std::io::empty())
            .map_err(io_error(folder))?;
    }
    for (source, target) in &files {
        let file = std::fs::File::open(source).map_err(io_error(source))?;
        let size = file.metadata().map_err(io_error(source))?.len();
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o755);
        header.set_size(size);
        tar.append_data(&mut header, target, file)
            .map_err(io_error(source))?;
    }
    for (name, text) in [
        ("Dockerfile", contents.dockerfile()),
        (".dockerignore", "Dockerfile\n.dockerignore\n".to_owned()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(text.len() as u64);
        tar.append_data(&mut header, name, text.as_bytes())
            .map_err(io_error(Path::new(name)))?;
    }
    let mut out = tar.into_inner().map_err(io_error(Path::new("tar")))?;
    out.flush().map_err(io_error(Path::new("tar")))
}

/// Removes the images of earlier builds of the same executable, so that rebuilding a debug
/// binary does not leave one large image behind each time. One still in use stays.
async fn remove_older(docker: &Docker, contents: &Contents, keep: &str) {
    let prefix = format!("{REPOSITORY}:{}-", contents.name);
    let filters = HashMap::from([("reference", vec![REPOSITORY])]);
    let Ok(images) = docker
        .list_images(Some(
            ListImagesOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
    else {
        return;
    };
    for tag in images.iter().flat_map(|i| &i.repo_tags) {
        // Only this executable's: `monitor-<hash>`, not `monitor-abc-<hash>`.
        let earlier = tag.strip_prefix(&prefix).is_some_and(|hash| {
            hash.len() == HASH_DIGITS && hash.chars().all(|c| c.is_ascii_hexdigit())
        });
        if earlier && tag != keep {
            let _ = docker
                .remove_image(tag, None::<RemoveImageOptions>, None)
                .await;
        }
    }
}

/// The build context's bytes, handed to the request body as they are written.
struct ChannelWriter(tokio::sync::mpsc::Sender<std::io::Result<Bytes>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::other("the engine stopped reading the build context"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn libraries_are_read_from_maps_and_from_ldd() {
        let maps = "\
55d0c0a00000-55d0c0a10000 r--p 00000000 08:01 1 /work/target/debug/monitor
7f0000000000-7f0000010000 r--p 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000010000-7f0000020000 r-xp 00010000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000020000-7f0000030000 r--p 00000000 08:01 3 /usr/lib/locale/C.utf8/LC_CTYPE
7f0000030000-7f0000040000 r--p 00000000 08:01 4 /usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache
7f0000040000-7f0000050000 r--p 00000000 08:01 5 /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
7ffc00000000-7ffc00010000 rw-p 00000000 00:00 0 [stack]
";
        let contents = Contents::new(
            "/proc/self/exe".into(),
            Some("monitor".into()),
            libraries_in_maps(maps),
        );
        assert_eq!(
            contents.loader.as_deref(),
            Some(Path::new("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"))
        );
        assert_eq!(
            contents.libraries,
            [PathBuf::from("/usr/lib/x86_64-linux-gnu/libc.so.6")]
        );
        assert_eq!(
            contents.entrypoint(),
            [
                "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                "--library-path",
                "/usr/lib/x86_64-linux-gnu",
                "/bin/monitor"
            ]
        );

        let ldd = "\tlinux-vdso.so.1 (0x00007ff7846f1000)
\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007ff7846be000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007ff782b3e000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007ff7846f3000)
";
        let contents = Contents::new("x".into(), None, libraries_in_ldd(ldd));
        assert_eq!(
            contents.loader.as_deref(),
            Some(Path::new("/lib64/ld-linux-x86-64.so.2"))
        );
        assert_eq!(contents.libraries.len(), 2);
        assert_eq!(contents.name, "loadtest");
    }

    #[test]
    fn a_static_executable_runs_without_a_loader() {
        let contents = Contents::new("/bin/busybox".into(), Some("busybox".into()), Vec::new());
        assert_eq!(contents.entrypoint(), ["/bin/busybox"]);
        assert_eq!(
            contents.files(),
            [(PathBuf::from("/bin/busybox"), PathBuf::from("bin/busybox"))]
        );
    }

    /// What this process has mapped covers what ldd says its executable needs.
    #[test]
    fn the_running_executable_has_every_library_ldd_lists() {
        let canonical = |paths: Vec<PathBuf>| -> BTreeSet<PathBuf> {
            paths
                .iter()
                .map(|p| std::fs::canonicalize(p).unwrap())
                .collect()
        };
        let running = Contents::running().unwrap();
        let listed = Contents::of(&std::env::current_exe().unwrap()).unwrap();
        assert!(running.loader.is_some(), "{running:?}");
        let mapped = canonical(
            running
                .loader
                .iter()
                .chain(&running.libraries)
                .cloned()
                .collect(),
        );
        let needed = canonical(
            listed
                .loader
                .iter()
                .chain(&listed.libraries)
                .cloned()
                .collect(),
        );
        assert!(
            needed.is_subset(&mapped),
            "ldd: {needed:?}, maps: {mapped:?}"
        );
    }

    #[test]
    fn names_are_fit_for_a_tag() {
        let named = |name: &str| Contents::new("x".into(), Some(name.into()), Vec::new()).name;
        assert_eq!(named("monitor"), "monitor");
        assert_eq!(named("my tool+1"), "my-tool-1");
        assert_eq!(named(".."), "loadtest");
    }

    #[test]
    fn the_tag_follows_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tool");
        std::fs::write(&file, b"one").unwrap();
        let contents = Contents::new(file.clone(), Some("tool".into()), Vec::new());
        let first = contents.tag().unwrap();
        assert!(first.starts_with("loadtest/stack-tunnel:tool-"), "{first}");
        assert_eq!(contents.tag().unwrap(), first);
        std::fs::write(&file, b"two").unwrap();
        assert_ne!(contents.tag().unwrap(), first);
    }
}
