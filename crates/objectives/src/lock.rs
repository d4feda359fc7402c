//! One writer per run folder: `RUN/.lock`, held with the operating system's advisory file
//! lock (`flock` on Unix, `LockFileEx` on Windows) for as long as the run lives. The lock
//! goes with the process, so a run killed with -9 leaves a file that the next run simply
//! locks again (a stale lock is taken over); the file records the holder's process id and
//! start time so the refused run can name it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Result, TrainError};

/// Name of the lock file inside a run folder.
pub const LOCK_FILE: &str = ".lock";

/// A held lock on a run folder; released when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct RunLock {
    _file: Arc<File>,
    path: PathBuf,
}

impl RunLock {
    /// Locks `dir` (created if needed) for this process, or fails with one line naming the
    /// run that holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "another run".to_string()
                } else {
                    format!("another run ({holder})")
                };
                return Err(TrainError::File {
                    path: dir.to_path_buf(),
                    message: format!(
                        "the run folder is being written by {holder}; wait for it to finish, \
                         or choose another run.out"
                    ),
                });
            }
            Err(TryLockError::Error(e)) => return Err(TrainError::io(&path, e)),
        }
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let me = format!("pid {}, started at unix time {since}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(me.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(|e| TrainError::io(&path, e))?;
        Ok(Self {
            _file: Arc::new(file),
            path,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_folder_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let first = RunLock::acquire(&run).unwrap();
        let err = RunLock::acquire(&run).unwrap_err().to_string();
        assert!(
            err.contains("run: the run folder is being written by another run (pid "),
            "{err}"
        );
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let clone = first.clone();
        drop(first);
        assert!(RunLock::acquire(&run).is_err(), "a clone still holds it");
        drop(clone);
        // A lock file left behind (as a killed run leaves it) is taken over.
        let again = RunLock::acquire(&run).unwrap();
        assert_eq!(again.path(), run.join(LOCK_FILE));
    }
}
