//! A plugin's bundle on disk: a directory is used where it is; a `.tar.gz` is unpacked once
//! per plugin version under the state directory.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("the bundle {0} does not exist")]
    Missing(PathBuf),
    #[error("the bundle {0} is neither a directory nor a .tar.gz")]
    Kind(PathBuf),
    #[error("cannot unpack the bundle {path}: {source}")]
    Unpack {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The directory the plugin's command runs in.
pub fn resolve(bundle: &Path, unpack_root: &Path, key: &str) -> Result<PathBuf, BundleError> {
    let metadata =
        std::fs::metadata(bundle).map_err(|_| BundleError::Missing(bundle.to_owned()))?;
    if metadata.is_dir() {
        return Ok(bundle.to_owned());
    }
    let name = bundle.to_string_lossy();
    if !(name.ends_with(".tar.gz") || name.ends_with(".tgz")) {
        return Err(BundleError::Kind(bundle.to_owned()));
    }
    let target = unpack_root.join(key);
    let done = target.join(".unpacked");
    if done.exists() {
        return Ok(target);
    }
    let unpack = || -> std::io::Result<()> {
        if target.exists() {
            std::fs::remove_dir_all(&target)?;
        }
        std::fs::create_dir_all(&target)?;
        let file = std::fs::File::open(bundle)?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        archive.set_preserve_permissions(true);
        // `unpack` refuses entries that would land outside `target` (`..`, absolute paths).
        archive.unpack(&target)?;
        std::fs::write(&done, b"")
    };
    unpack().map_err(|source| BundleError::Unpack {
        path: bundle.to_owned(),
        source,
    })?;
    Ok(target)
}
