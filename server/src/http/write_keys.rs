//! Write keys: the secret an SDK sends (as the HTTP basic-auth user) to say which tenant its
//! events belong to. Kept as one JSON document, `_tributary/write_keys.json` under the data
//! root, so that `tributary write-key create` and a running server share them. The server reads
//! it again when it meets a key it does not know (at most once a second).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tributary_catalog::{DEFAULT_TENANT, SYSTEM_DIRECTORY, Storage};

use crate::error::{Error, Result};

/// Source name of events sent with no write keys configured.
pub const OPEN_SOURCE: &str = "http";
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// One write key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WriteKey {
    /// The secret.
    pub key: String,
    /// The tenant its events go to.
    pub tenant: String,
    /// The channel, stored in `events.source`.
    pub source: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<WriteKey>,
}

const KEY_FILE: &str = "write_keys.json";

/// Reads every write key of a data root.
pub async fn load(storage: &Storage) -> Result<Vec<WriteKey>> {
    let Some(bytes) = storage.read_system_file(KEY_FILE).await? else {
        return Ok(Vec::new());
    };
    let file: KeyFile = serde_json::from_slice(&bytes)
        .map_err(|e| Error::BadInput(format!("{SYSTEM_DIRECTORY}/{KEY_FILE} is damaged: {e}")))?;
    Ok(file.keys)
}

/// Replaces the write keys of a data root.
pub async fn save(storage: &Storage, keys: Vec<WriteKey>) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(&KeyFile { keys })
        .map_err(|e| Error::BadInput(format!("cannot encode write keys: {e}")))?;
    storage.write_system_file(KEY_FILE, bytes).await?;
    Ok(())
}

/// A new random key.
pub fn new_key() -> String {
    format!("trk_{}", uuid::Uuid::new_v4().simple())
}

/// Where an accepted request's events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Tenant.
    pub tenant: String,
    /// Source name for `events.source`.
    pub source: String,
}

/// The server's view of the write keys.
#[derive(Debug)]
pub struct KeyRing {
    storage: Storage,
    keys: RwLock<(HashMap<String, WriteKey>, Option<Instant>)>,
}

/// Why a request's key was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyRefusal {
    /// No key given while keys are configured.
    Missing,
    /// A key that is not configured.
    Unknown,
}

impl KeyRing {
    /// Loads the keys of a data root.
    pub async fn open(storage: Storage) -> Result<Self> {
        let ring = Self {
            storage,
            keys: RwLock::new((HashMap::new(), None)),
        };
        ring.reload().await?;
        Ok(ring)
    }

    /// True when no key is configured (any key then writes to the default tenant).
    pub fn is_open(&self) -> bool {
        self.keys.read().expect("key ring poisoned").0.is_empty()
    }

    async fn reload(&self) -> Result<()> {
        let keys = load(&self.storage).await?;
        let map = keys.into_iter().map(|k| (k.key.clone(), k)).collect();
        *self.keys.write().expect("key ring poisoned") = (map, Some(Instant::now()));
        Ok(())
    }

    fn lookup(&self, key: Option<&str>) -> Option<Result<Destination, KeyRefusal>> {
        let keys = self.keys.read().expect("key ring poisoned");
        if keys.0.is_empty() {
            return Some(Ok(Destination {
                tenant: DEFAULT_TENANT.to_string(),
                source: OPEN_SOURCE.to_string(),
            }));
        }
        let Some(key) = key else {
            return Some(Err(KeyRefusal::Missing));
        };
        keys.0.get(key).map(|k| {
            Ok(Destination {
                tenant: k.tenant.clone(),
                source: k.source.clone(),
            })
        })
    }

    fn may_reload(&self) -> bool {
        self.keys
            .read()
            .expect("key ring poisoned")
            .1
            .is_none_or(|at| at.elapsed() >= RELOAD_EVERY)
    }

    /// Where a request with this key writes. The keys are read again (at most once a second)
    /// for a key not known yet, and while none is configured, so that a new key works at once.
    pub async fn authorize(&self, key: Option<&str>) -> Result<Destination, KeyRefusal> {
        let known = !self.is_open() && matches!(self.lookup(key), Some(Ok(_)));
        if !known
            && self.may_reload()
            && let Err(e) = self.reload().await
        {
            tracing::warn!("cannot read the write keys: {e}");
        }
        self.lookup(key).unwrap_or(Err(KeyRefusal::Unknown))
    }
}
