//! Writing files so that a reader never sees half of one.

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Writes `content` beside `dest`, syncs it, then renames it into place; creates the folder.
pub fn write_atomically(dest: &Path, content: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = dest.with_extension(format!("milepost-tmp-{}", std::process::id()));
    let written = File::create(&tmp).and_then(|mut file| {
        file.write_all(content)?;
        file.sync_all()
    });
    // A write that failed (a full disk) leaves nothing behind beside `dest`.
    match written.and_then(|()| std::fs::rename(&tmp, dest)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}
