//! What goes into the identity graph and what comes out of it: identifiers, edge records, customer
//! ids, and the changes and refusals that `identity_changes` and `EXPLAIN` show.

use std::fmt;

use twox_hash::XxHash3_128;

use crate::error::{Error, Result};
use crate::rules::BlockReason;

/// One identifier: its type (`user_id`, `phone`…) and value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identifier {
    /// Identifier type.
    pub id_type: String,
    /// Identifier value.
    pub value: String,
}

impl Identifier {
    /// An identifier from its parts.
    pub fn new(id_type: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            id_type: id_type.into(),
            value: value.into(),
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} '{}'", self.id_type, self.value)
    }
}

/// Whether a record joins its two identifiers or releases them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The two identifiers belong together from this time.
    Bind,
    /// They no longer do (a phone released by its owner).
    Unbind,
}

impl std::str::FromStr for Action {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        match text {
            "bind" => Ok(Self::Bind),
            "unbind" => Ok(Self::Unbind),
            other => Err(Error::InvalidAction(other.to_string())),
        }
    }
}

/// One edge record: two identifiers observed together.
#[derive(Debug, Clone, Copy)]
pub struct EdgeRecord<'a> {
    /// Type and value of one identifier.
    pub from: (&'a str, &'a str),
    /// Type and value of the other.
    pub to: (&'a str, &'a str),
    /// When, µs since the epoch.
    pub observed_at: i64,
    /// Bind or unbind.
    pub action: Action,
    /// Where the record came from (`crm`, `web`…).
    pub source: &'a str,
}

/// A customer id: 96 bits of the founding identifier's hash, shown as `c` and 24 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomerId(pub(crate) u128);

impl CustomerId {
    pub(crate) fn of(id_type: &str, value: &str) -> Self {
        // The type seeds the hash of the value (FNV-1a of the type's name).
        let seed = id_type.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Self(XxHash3_128::oneshot_with_seed(seed, value.as_bytes()) >> 32)
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{:024x}", self.0)
    }
}

impl std::str::FromStr for CustomerId {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        let invalid = || Error::InvalidCustomerId(text.to_string());
        let hex = text.strip_prefix('c').ok_or_else(invalid)?;
        if hex.len() != 24 {
            return Err(invalid());
        }
        u128::from_str_radix(hex, 16)
            .map(Self)
            .map_err(|_| invalid())
    }
}

/// Why a bound pair did not merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// One of its identifiers is blocked.
    Blocked {
        /// The blocked identifier.
        identifier: Identifier,
        /// Which rule blocks it.
        reason: BlockReason,
    },
    /// The merged customer would hold more identifiers of `id_type` than its limit.
    Limit {
        /// The identifier type whose limit it would break.
        id_type: String,
        /// The limit.
        limit: u32,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Blocked { identifier, reason } => {
                write!(f, "{identifier} is blocked ({reason})")
            }
            Self::Limit { id_type, limit } => write!(
                f,
                "the merged customer would hold more than {limit} {id_type} (limit {limit})"
            ),
        }
    }
}

/// What a change to the graph did to customers, for `identity_changes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Two customers became one; `customer` is the one kept.
    Merge,
    /// A customer lost identifiers to a new customer `other`.
    Split,
    /// A pair was refused; nothing merged.
    Refused,
}

impl ChangeKind {
    /// Lower-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Merge => "merge",
            Self::Split => "split",
            Self::Refused => "refused",
        }
    }
}

/// One change to customers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The customer kept (merge), split (split), or holding `from` (refused; none if blocked).
    pub customer: Option<CustomerId>,
    /// The customer absorbed (merge), split off (split), or holding `to` (refused).
    pub other: Option<CustomerId>,
    /// The pair that caused it (for a split: the pair unbound or changed).
    pub edge: (Identifier, Identifier),
    /// The pair's time.
    pub observed_at: i64,
    /// Why, in words.
    pub reason: String,
}

/// One edge of the graph as explained to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeView {
    /// One identifier.
    pub from: Identifier,
    /// The other.
    pub to: Identifier,
    /// The pair's time (see the crate docs).
    pub observed_at: i64,
    /// Source of its first record.
    pub source: String,
    /// True when bound now.
    pub bound: bool,
    /// Why it did not merge, when bound but refused.
    pub refusal: Option<Refusal>,
}
