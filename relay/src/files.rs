//! Files the relay writes that hold mail or secrets: the spool, mailboxes, the TLS key log and
//! session records. Each is created readable by its owner only (0600, directories 0700) and
//! never through a symbolic link: a link planted where one of them goes (pointing at a file of
//! another user, or out of the lab's directories) is refused with `ELOOP`, not followed.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every file created here.
const FILE_MODE: u32 = 0o600;
/// Mode of every directory created here.
const DIR_MODE: u32 = 0o700;

/// Opens `path` for appending, creating it 0600; an existing file is made 0600 too (a key log
/// left world-readable by an older run would otherwise stay so).
pub fn open_private_append(path: &Path) -> std::io::Result<File> {
    open_private(path, OpenOptions::new().create(true).append(true))
}

/// Creates (or empties) `path` for writing, 0600, never through a symbolic link.
pub fn create_private(path: &Path) -> std::io::Result<File> {
    open_private(path, OpenOptions::new().write(true).create(true).truncate(true))
}

/// Opens with `opts`, 0600 and never through a symbolic link; an existing file is made 0600.
fn open_private(path: &Path, opts: &mut OpenOptions) -> std::io::Result<File> {
    let f = opts.mode(FILE_MODE).custom_flags(libc::O_NOFOLLOW).open(path).map_err(|e| explain_link(path, e))?;
    f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    Ok(f)
}

/// Writes `bytes` to `path` through a temporary file (0600, never through a link), fsyncs it,
/// then renames it into place. The caller fsyncs the directory when the name must survive a
/// crash.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| explain_link(&tmp, e))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    // rename(2) replaces a link at `path` itself; it never writes through it.
    std::fs::rename(&tmp, path)
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `base/<parts...>` one directory at a time (0700), fsyncing the parent of each one
/// it creates, so a mailbox directory made just before a delivery survives a crash with the
/// file in it. Every existing part must be a real directory: a symbolic link is refused (it
/// could lead a delivery out of the mailbox tree). `base` itself must already exist.
pub fn create_dirs_durably(base: &Path, parts: &[&str]) -> std::io::Result<()> {
    let mut dir = base.to_path_buf();
    for part in parts {
        let next = dir.join(part);
        match std::fs::symlink_metadata(&next) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{} exists and is not a directory (a symbolic link or a file): refusing to deliver through it",
                    next.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match DirBuilder::new().mode(DIR_MODE).create(&next) {
                    Ok(()) => sync_dir(&dir)?,
                    // Made by a delivery running beside this one: check it like any other.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        if !std::fs::symlink_metadata(&next)?.is_dir() {
                            return Err(std::io::Error::other(format!("{} is not a directory", next.display())));
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        dir = next;
    }
    Ok(())
}

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// `ELOOP` from `O_NOFOLLOW` says "too many levels of symbolic links": say what happened.
fn explain_link(path: &Path, e: std::io::Error) -> std::io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        std::io::Error::other(format!("{} is a symbolic link: refusing to follow it", path.display()))
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("relay-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch");
        d
    }

    #[test]
    fn files_are_private_and_links_are_refused() {
        let d = scratch("links");
        let target = d.join("target");
        std::fs::write(&target, b"untouched").expect("target");
        std::os::unix::fs::symlink(&target, d.join("keys.log")).expect("link");
        let err = open_private_append(&d.join("keys.log")).expect_err("a link is refused");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        std::os::unix::fs::symlink(&target, d.join("m.tmp")).expect("link");
        let err = write_durably(&d.join("m.msg"), b"mail").expect_err("a planted temporary link is refused");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read(&target).expect("target"), b"untouched");

        write_durably(&d.join("ok.msg"), b"mail").expect("write");
        let mode = std::fs::metadata(d.join("ok.msg")).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = create_private(&d.join("keys.log")).expect_err("a link is refused");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        create_private(&d.join("merged.log")).expect("create");
        assert_eq!(std::fs::metadata(d.join("merged.log")).expect("meta").permissions().mode() & 0o777, 0o600);
        let old = d.join("old.log");
        std::fs::write(&old, b"").expect("old");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        open_private_append(&old).expect("open");
        assert_eq!(std::fs::metadata(&old).expect("meta").permissions().mode() & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn mailbox_dirs_are_made_private_and_links_refused() {
        let d = scratch("dirs");
        create_dirs_durably(&d, &["dest.example", "alice"]).expect("create");
        let meta = std::fs::symlink_metadata(d.join("dest.example/alice")).expect("made");
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        create_dirs_durably(&d, &["dest.example", "alice"]).expect("again: nothing to do");
        let outside = scratch("dirs-outside");
        std::os::unix::fs::symlink(&outside, d.join("dest.example/bob")).expect("link");
        let err = create_dirs_durably(&d, &["dest.example", "bob"]).expect_err("link refused");
        assert!(err.to_string().contains("not a directory"), "{err}");
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_dir_all(&outside);
    }
}
