//! Helpers shared by the integration tests of this crate.

use std::path::{Path, PathBuf};

/// A temporary directory removed on drop (also when the test fails).
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `<tmp>/podswitch-<suite>-<pid>-<tag>`, emptied; not created.
pub fn temp_dir(suite: &str, tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("podswitch-{suite}-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    TempDir(dir)
}
