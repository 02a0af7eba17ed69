//! The suppression list: identifiers erased by `forget`, whose new events and edges are dropped
//! when they arrive so that a person once erased does not come back. The list keeps hashes of
//! the identifiers, not the identifiers, in `_tributary/suppressed/<tenant>.json`.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::compute::filter_record_batch;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tributary_catalog::builtin::{EVENTS, IDENTITIES};
use tributary_catalog::{SYSTEM_DIRECTORY, Storage};
use tributary_identity::Identifier;
use twox_hash::XxHash3_128;

use super::records::{ANONYMOUS_ID, USER_ID, text};
use crate::error::{Error, Result};

/// Erased identifiers per tenant.
#[derive(Debug)]
pub struct Suppression {
    storage: Storage,
    lists: RwLock<HashMap<String, HashSet<u128>>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SuppressionFile {
    /// xxh3-128 of `type \x1f value`, in hex.
    hashes: Vec<String>,
}

fn hash(id_type: &str, value: &str) -> u128 {
    let mut bytes = Vec::with_capacity(id_type.len() + value.len() + 1);
    bytes.extend_from_slice(id_type.as_bytes());
    bytes.push(0x1f);
    bytes.extend_from_slice(value.as_bytes());
    XxHash3_128::oneshot(&bytes)
}

fn path(tenant: &str) -> Path {
    Path::from(format!("{SYSTEM_DIRECTORY}/suppressed/{tenant}.json"))
}

impl Suppression {
    /// An empty list over `storage`.
    pub fn new(storage: Storage) -> Self {
        Self {
            storage,
            lists: RwLock::default(),
        }
    }

    /// Reads a tenant's list from storage.
    pub async fn load(&self, tenant: &str) -> Result<()> {
        let store = self.storage.root_store()?;
        let file: SuppressionFile = match store.get(&path(tenant)).await {
            Ok(found) => {
                let bytes = found
                    .bytes()
                    .await
                    .map_err(|e| Error::Storage(e.to_string()))?;
                serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Storage(format!("{SYSTEM_DIRECTORY}/suppressed/{tenant}.json: {e}"))
                })?
            }
            Err(object_store::Error::NotFound { .. }) => SuppressionFile::default(),
            Err(e) => return Err(Error::Storage(e.to_string())),
        };
        let hashes = file
            .hashes
            .iter()
            .filter_map(|h| u128::from_str_radix(h, 16).ok())
            .collect();
        self.lists
            .write()
            .expect("suppression poisoned")
            .insert(tenant.to_string(), hashes);
        Ok(())
    }

    /// Adds identifiers to a tenant's list and stores it before returning.
    pub async fn add(&self, tenant: &str, identifiers: &[Identifier]) -> Result<()> {
        let hashes: Vec<String> = {
            let mut lists = self.lists.write().expect("suppression poisoned");
            let list = lists.entry(tenant.to_string()).or_default();
            for id in identifiers {
                list.insert(hash(&id.id_type, &id.value));
            }
            let mut all: Vec<String> = list.iter().map(|h| format!("{h:032x}")).collect();
            all.sort();
            all
        };
        let body = serde_json::to_vec_pretty(&SuppressionFile { hashes })
            .map_err(|e| Error::Storage(e.to_string()))?;
        self.storage
            .root_store()?
            .put(&path(tenant), PutPayload::from(body))
            .await
            .map_err(|e| Error::Storage(e.to_string()))?;
        Ok(())
    }

    /// True when `(id_type, value)` was erased in `tenant`.
    pub fn contains(&self, tenant: &str, id_type: &str, value: &str) -> bool {
        self.lists
            .read()
            .expect("suppression poisoned")
            .get(tenant)
            .is_some_and(|list| list.contains(&hash(id_type, value)))
    }

    /// The rows of a write that carry no erased identifier.
    pub fn keep(&self, tenant: &str, table: &str, batch: RecordBatch) -> Result<RecordBatch> {
        let lists = self.lists.read().expect("suppression poisoned");
        let Some(list) = lists.get(tenant).filter(|l| !l.is_empty()) else {
            return Ok(batch);
        };
        let pairs: Vec<(Option<StringArray>, Option<StringArray>, &str)> = match table {
            EVENTS => vec![
                (None, text(&batch, "anonymous_id")?, ANONYMOUS_ID),
                (None, text(&batch, "user_id")?, USER_ID),
            ],
            IDENTITIES => vec![
                (text(&batch, "id_type")?, text(&batch, "id_value")?, ""),
                (
                    text(&batch, "linked_type")?,
                    text(&batch, "linked_value")?,
                    "",
                ),
            ],
            _ => return Ok(batch),
        };
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|row| {
                let erased = pairs.iter().any(|(types, values, fixed)| {
                    let Some(values) = values.as_ref().filter(|v| v.is_valid(row)) else {
                        return false;
                    };
                    let id_type = types
                        .as_ref()
                        .filter(|t| t.is_valid(row))
                        .map_or(*fixed, |t| t.value(row));
                    list.contains(&hash(id_type, values.value(row)))
                });
                Some(!erased)
            })
            .collect();
        let dropped = keep.false_count();
        if dropped == 0 {
            return Ok(batch);
        }
        tracing::info!(tenant, table, dropped, "dropped rows of erased identifiers");
        Ok(filter_record_batch(&batch, &keep)?)
    }
}
