//! Cluster file-system paths: absolute, normalised, bounded.
//!
//! `basin:///a/b`, `basin:/a/b` and `/a/b` all name the same path. `.` is
//! dropped; `..`, empty components, NUL and over-long paths are refused.

use thiserror::Error;

/// Longest path accepted, in bytes (HDFS's default limit).
pub const MAX_PATH_BYTES: usize = 8000;
/// Longest single component, in bytes (HDFS's default limit).
pub const MAX_COMPONENT_BYTES: usize = 255;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PathError {
    #[error("invalid path {0:?}: must be absolute")]
    NotAbsolute(String),
    #[error("invalid path {0:?}: '..' is not allowed")]
    DotDot(String),
    #[error("invalid path {0:?}: empty component")]
    EmptyComponent(String),
    #[error("invalid path: contains a NUL byte")]
    Nul,
    #[error("invalid path: longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    #[error("invalid path {0:?}: a component is longer than {MAX_COMPONENT_BYTES} bytes")]
    ComponentTooLong(String),
}

/// Normalises a cluster path into `/a/b` form (root is `/`).
pub fn normalize(raw: &str) -> Result<String, PathError> {
    let p = raw
        .strip_prefix("basin://")
        .or_else(|| raw.strip_prefix("basin:"))
        .unwrap_or(raw);
    if p.contains('\0') {
        return Err(PathError::Nul);
    }
    if p.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    if !p.starts_with('/') {
        return Err(PathError::NotAbsolute(raw.to_string()));
    }
    let trimmed = p.trim_end_matches('/');
    let mut out = Vec::new();
    for (i, comp) in trimmed.split('/').enumerate() {
        match comp {
            "" if i == 0 => {}
            "" => return Err(PathError::EmptyComponent(raw.to_string())),
            "." => {}
            ".." => return Err(PathError::DotDot(raw.to_string())),
            c if c.len() > MAX_COMPONENT_BYTES => {
                return Err(PathError::ComponentTooLong(raw.to_string()));
            }
            c => out.push(c),
        }
    }
    Ok(format!("/{}", out.join("/")))
}

/// The parent of a normalised path (`None` for the root).
pub fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// The last component of a normalised path (empty for the root).
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or("")
}

/// Joins a child name onto a normalised directory path.
pub fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Whether `path` is `ancestor` or lies below it.
pub fn is_within(path: &str, ancestor: &str) -> bool {
    ancestor == "/" || path == ancestor || path.starts_with(&format!("{ancestor}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_rejects() {
        assert_eq!(normalize("basin:///a/b/").unwrap(), "/a/b");
        assert_eq!(normalize("/a/./b").unwrap(), "/a/b");
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("basin:///").unwrap(), "/");
        assert!(matches!(normalize("/a/../b"), Err(PathError::DotDot(_))));
        assert!(matches!(
            normalize("/a//b"),
            Err(PathError::EmptyComponent(_))
        ));
        assert!(matches!(normalize("a/b"), Err(PathError::NotAbsolute(_))));
        assert_eq!(normalize("/a\0b"), Err(PathError::Nul));
        assert_eq!(
            normalize(&format!("/{}", "x/".repeat(5000))),
            Err(PathError::TooLong)
        );
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a"), Some("/"));
        assert!(is_within("/a/b", "/a"));
        assert!(!is_within("/ab", "/a"));
    }
}
