//! Where the bytes go: one root URL on an object store, under which every tenant's Delta tables
//! live as `<root>/<tenant>/<table>/`.
//!
//! Supported roots: a local directory (a plain path or `file://`), `s3://bucket/prefix` on AWS or
//! any S3-compatible server (endpoint, region and credentials from the `AWS_*` environment
//! variables or [`S3Options`]), and `memory://` for tests (one in-memory store per [`Storage`]).

use std::collections::HashMap;
use std::sync::{Arc, Once};

use deltalake::DeltaTableBuilder;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

use crate::error::{Error, Result};

/// Options for an S3-compatible store; each one left `None` falls back to the usual `AWS_*`
/// environment variable.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// `AWS_ENDPOINT_URL`: e.g. `http://127.0.0.1:9000` for a local S3-compatible server.
    pub endpoint: Option<String>,
    /// `AWS_REGION`.
    pub region: Option<String>,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
    /// Address buckets as `endpoint/bucket` (path style, what most S3-compatible servers want)
    /// rather than `bucket.endpoint`. Default: path style.
    pub virtual_hosted_style: bool,
}

/// The root of all Tributary data and how to reach it.
#[derive(Debug, Clone)]
pub struct Storage {
    root: Url,
    options: HashMap<String, String>,
    /// Shared by every table of a `memory://` root, so that tables outlive a single handle.
    memory: Option<Arc<InMemory>>,
}

impl Storage {
    /// Parses a data location: a directory path (created if missing), `file://`, `s3://` or
    /// `s3a://`, or `memory://`.
    pub fn parse(location: &str, s3: &S3Options) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidDataLocation {
            location: location.to_string(),
            reason,
        };
        if location.trim().is_empty() {
            return Err(invalid("the location is empty".into()));
        }
        if location.starts_with("memory:") {
            return Ok(Self {
                root: Url::parse("memory:///").map_err(|e| invalid(e.to_string()))?,
                options: HashMap::new(),
                memory: Some(Arc::new(InMemory::new())),
            });
        }
        let mut root = if location.contains("://") {
            Url::parse(location).map_err(|e| invalid(e.to_string()))?
        } else {
            local_directory_url(location).map_err(invalid)?
        };
        let mut options = HashMap::new();
        match root.scheme() {
            "file" => {
                let path = root
                    .to_file_path()
                    .map_err(|()| invalid("not a local path".into()))?;
                std::fs::create_dir_all(&path)
                    .map_err(|e| invalid(format!("cannot create directory: {e}")))?;
            }
            "s3" | "s3a" => {
                register_s3_handlers();
                if root.host_str().is_none_or(str::is_empty) {
                    return Err(invalid("an s3:// location needs a bucket".into()));
                }
                options = s3_storage_options(s3);
            }
            other => {
                return Err(invalid(format!(
                    "unsupported scheme '{other}': use a directory path, file://, s3:// or memory://"
                )));
            }
        }
        if !root.path().ends_with('/') {
            let path = format!("{}/", root.path());
            root.set_path(&path);
        }
        Ok(Self {
            root,
            options,
            memory: None,
        })
    }

    /// Another location reached with this storage's S3 settings (endpoint, credentials) when
    /// both are on S3: where files are exported to.
    pub fn sibling(&self, location: &str) -> Result<Self> {
        let mut other = Self::parse(location, &S3Options::default())?;
        if matches!(other.root.scheme(), "s3" | "s3a") && !self.options.is_empty() {
            other.options = self.options.clone();
        }
        Ok(other)
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Self {
        Self::parse("memory://", &S3Options::default()).expect("memory:// is always valid")
    }

    /// The root URL, ending in `/`.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The local directory of a `file://` root; `None` for object stores.
    pub fn local_directory(&self) -> Option<std::path::PathBuf> {
        if self.root.scheme() == "file" {
            self.root.to_file_path().ok()
        } else {
            None
        }
    }

    /// True for a `memory://` root, whose data ends with the process.
    pub fn is_in_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// The URL of a directory under the root, ending in `/`.
    pub fn url_of(&self, relative_dir: &str) -> Result<Url> {
        self.root
            .join(&format!("{relative_dir}/"))
            .map_err(|e| Error::InvalidDataLocation {
                location: relative_dir.to_string(),
                reason: e.to_string(),
            })
    }

    /// A Delta table builder for a table at `url`, with this storage's options and store.
    pub fn delta_builder(&self, url: Url) -> Result<DeltaTableBuilder> {
        let builder = DeltaTableBuilder::from_url(url.clone())?;
        Ok(match &self.memory {
            Some(store) => builder.with_storage_backend(Arc::clone(store) as _, url),
            None => builder.with_storage_options(self.options.clone()),
        })
    }

    /// The object store, rooted at the data root: used to list tenants and tables and to remove
    /// dropped tables' files.
    pub fn root_store(&self) -> Result<Arc<dyn ObjectStore>> {
        let log_store = self.delta_builder(self.root.clone())?.build_storage()?;
        Ok(log_store.object_store(None))
    }

    /// The store at the root of the data root's bucket (or file system) and the URL it is
    /// registered under (`s3://bucket`, `file://`): what the table scan reads files through, and
    /// what a cluster executor registers to read the same files.
    pub fn bucket_store(&self) -> Result<(Url, Arc<dyn ObjectStore>)> {
        let log_store = self.delta_builder(self.root.clone())?.build_storage()?;
        let url = Url::parse(&format!(
            "{}://{}",
            self.root.scheme(),
            self.root.authority()
        ))
        .map_err(|e| Error::InvalidDataLocation {
            location: self.root.to_string(),
            reason: e.to_string(),
        })?;
        Ok((url, log_store.root_object_store(None)))
    }

    /// Reads one of Tributary's own files under `_tributary/` (write keys, users); `None` when
    /// it does not exist yet.
    pub async fn read_system_file(&self, name: &str) -> Result<Option<bytes::Bytes>> {
        let store = self.root_store()?;
        match store.get(&system_file_path(name)).await {
            Ok(found) => Ok(Some(found.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces one of Tributary's own files under `_tributary/` (one object put: readers see
    /// the old or the new contents, never a mix).
    pub async fn write_system_file(&self, name: &str, contents: Vec<u8>) -> Result<()> {
        self.root_store()?
            .put(&system_file_path(name), PutPayload::from(contents))
            .await?;
        Ok(())
    }
}

fn system_file_path(name: &str) -> object_store::path::Path {
    object_store::path::Path::from(format!("{}/{name}", crate::SYSTEM_DIRECTORY))
}

fn local_directory_url(path: &str) -> std::result::Result<Url, String> {
    let path = std::path::Path::new(path);
    std::fs::create_dir_all(path).map_err(|e| format!("cannot create directory: {e}"))?;
    let absolute = path
        .canonicalize()
        .map_err(|e| format!("cannot resolve directory: {e}"))?;
    Url::from_directory_path(&absolute).map_err(|()| "not an absolute path".to_string())
}

fn s3_storage_options(s3: &S3Options) -> HashMap<String, String> {
    let mut options = HashMap::new();
    let mut set = |key: &str, value: &Option<String>| {
        if let Some(value) = value {
            options.insert(key.to_string(), value.clone());
        }
    };
    set("AWS_ENDPOINT_URL", &s3.endpoint);
    set("AWS_REGION", &s3.region);
    set("AWS_ACCESS_KEY_ID", &s3.access_key_id);
    set("AWS_SECRET_ACCESS_KEY", &s3.secret_access_key);
    let endpoint = s3
        .endpoint
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
    if endpoint.is_some_and(|e| e.starts_with("http://")) {
        options.insert("AWS_ALLOW_HTTP".into(), "true".into());
    }
    options.insert(
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST".into(),
        s3.virtual_hosted_style.to_string(),
    );
    options
}

fn register_s3_handlers() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| deltalake::aws::register_handlers(None));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_path_becomes_file_url_with_trailing_slash() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::parse(
            dir.path().join("data").to_str().unwrap(),
            &S3Options::default(),
        )
        .unwrap();
        assert_eq!(storage.root().scheme(), "file");
        assert!(storage.root().path().ends_with("/data/"));
        assert!(dir.path().join("data").is_dir());
    }

    #[test]
    fn unknown_scheme_and_bucketless_s3_are_refused() {
        let err = Storage::parse("ftp://host/x", &S3Options::default()).unwrap_err();
        assert!(
            err.to_string().contains("unsupported scheme 'ftp'"),
            "{err}"
        );
        let err = Storage::parse("s3:///prefix", &S3Options::default()).unwrap_err();
        assert!(err.to_string().contains("needs a bucket"), "{err}");
    }

    #[test]
    fn url_of_nests_under_root() {
        let storage = Storage::in_memory();
        assert_eq!(
            storage.url_of("default/events").unwrap().as_str(),
            "memory:///default/events/"
        );
    }
}
