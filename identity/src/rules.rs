//! The rules identity resolution follows, as a tenant configures them (`identity.json`).
//!
//! - `priority`: identifier types, strongest first. It orders identifiers (the oldest, then the
//!   strongest, identifier founds a customer), names the strongest type when a merge is refused,
//!   and picks a customer's primary identifier.
//! - `limits`: at most this many identifiers of a type per customer. An edge whose merge would
//!   exceed a limit is refused and recorded with the reason.
//! - `blocked_values` / `blocked_patterns` / `block_repeated_digits`: identifiers that never merge
//!   (placeholders typed by cashiers, `null` sent by a broken SDK).

use std::collections::HashMap;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A blocked-value pattern, for one identifier type or for all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedPattern {
    /// The identifier type it applies to; every type when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_type: Option<String>,
    /// A regular expression (Rust `regex` syntax) the whole value must match.
    pub pattern: String,
}

/// A table imported from another system (CRM, ERP) whose columns are profile traits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraitTable {
    /// Table name in the tenant.
    pub table: String,
    /// The identifier type of `id_column` (`user_id`, `phone`...).
    pub id_type: String,
    /// The column holding the identifier.
    pub id_column: String,
    /// The source name its traits have in `trait_source_priority`.
    pub source: String,
    /// A timestamp column saying when the row was last true; without it the row is oldest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_column: Option<String>,
}

/// Identity resolution rules, as written in `identity.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Identifier types, strongest first; unlisted types come after, by name.
    pub priority: Vec<String>,
    /// At most this many identifiers of a type per customer; unlisted types are unlimited.
    pub limits: HashMap<String, u32>,
    /// Values that never merge, compared case-insensitively after trimming.
    pub blocked_values: Vec<String>,
    /// Patterns of values that never merge.
    pub blocked_patterns: Vec<BlockedPattern>,
    /// Block values of five or more digits that are all the same digit (`00000000000`).
    pub block_repeated_digits: bool,
    /// Sources of traits, most trusted first (profiles); unlisted sources come after.
    pub trait_source_priority: Vec<String>,
    /// Imported tables whose columns are traits (profiles).
    pub trait_tables: Vec<TraitTable>,
    /// The event whose count, time and revenue profiles compute (profiles).
    pub purchase_event: String,
    /// The property of a purchase holding its revenue (profiles).
    pub revenue_property: String,
    /// The day thresholds of the lifecycle stages (`lifecycle()`).
    pub lifecycle: LifecycleThresholds,
}

/// When a customer is in which lifecycle stage, in days before the time of the question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleThresholds {
    /// `new`: the first purchase at most this many days ago.
    pub new_days: u32,
    /// `active`: the last purchase at most this many days ago.
    pub active_days: u32,
    /// `at_risk` up to this many days since the last purchase (`dormant` after).
    pub at_risk_days: u32,
    /// `dormant` up to this many days since the last purchase (`churned` after).
    pub dormant_days: u32,
    /// `reactivated`: an active customer whose last purchase came more than this many days after
    /// the one before.
    pub reactivation_gap_days: u32,
}

impl Default for LifecycleThresholds {
    fn default() -> Self {
        Self {
            new_days: 30,
            active_days: 90,
            at_risk_days: 180,
            dormant_days: 365,
            reactivation_gap_days: 180,
        }
    }
}

impl Default for RulesConfig {
    fn default() -> Self {
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_string()).collect();
        Self {
            priority: names(&[
                "user_id",
                "phone",
                "email",
                "wechat_openid",
                "device_id",
                "anonymous_id",
            ]),
            limits: HashMap::from([("user_id".to_string(), 1)]),
            blocked_values: names(&[
                "",
                "null",
                "undefined",
                "none",
                "nil",
                "unknown",
                "anonymous",
                "[object object]",
                "nan",
                "-1",
                "0",
            ]),
            blocked_patterns: Vec::new(),
            block_repeated_digits: true,
            trait_source_priority: Vec::new(),
            trait_tables: Vec::new(),
            purchase_event: "purchase".to_string(),
            revenue_property: "revenue".to_string(),
            lifecycle: LifecycleThresholds::default(),
        }
    }
}

/// Why an identifier is blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockReason {
    /// In `blocked_values`.
    Value,
    /// Matches a `blocked_patterns` entry (its text).
    Pattern(String),
    /// All the same digit.
    RepeatedDigits,
}

impl std::fmt::Display for BlockReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value => write!(f, "a blocked value"),
            Self::Pattern(p) => write!(f, "matches blocked pattern '{p}'"),
            Self::RepeatedDigits => write!(f, "a placeholder of one repeated digit"),
        }
    }
}

/// Compiled rules.
#[derive(Debug, Clone)]
pub struct Rules {
    config: RulesConfig,
    blocked_values: Vec<String>,
    patterns: Vec<(Option<String>, Regex, String)>,
}

impl Default for Rules {
    fn default() -> Self {
        Self::new(RulesConfig::default()).expect("default rules compile")
    }
}

impl Rules {
    /// Checks and compiles a configuration.
    pub fn new(config: RulesConfig) -> Result<Self> {
        let mut patterns = Vec::with_capacity(config.blocked_patterns.len());
        for blocked in &config.blocked_patterns {
            let anchored = format!("^(?:{})$", blocked.pattern);
            let regex = Regex::new(&anchored).map_err(|e| Error::InvalidRules {
                reason: format!("blocked pattern '{}': {e}", blocked.pattern),
            })?;
            patterns.push((blocked.id_type.clone(), regex, blocked.pattern.clone()));
        }
        if let Some((kind, _)) = config.limits.iter().find(|(_, limit)| **limit == 0) {
            return Err(Error::InvalidRules {
                reason: format!("the limit for '{kind}' is 0; a limit must be at least 1"),
            });
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = config.priority.iter().find(|t| !seen.insert(t.as_str())) {
            return Err(Error::InvalidRules {
                reason: format!("'{dup}' appears twice in priority"),
            });
        }
        let blocked_values = config
            .blocked_values
            .iter()
            .map(|v| v.trim().to_lowercase())
            .collect();
        Ok(Self {
            config,
            blocked_values,
            patterns,
        })
    }

    /// Parses `identity.json` text.
    pub fn from_json(text: &str) -> Result<Self> {
        let config = serde_json::from_str(text).map_err(|e| Error::InvalidRules {
            reason: e.to_string(),
        })?;
        Self::new(config)
    }

    /// The configuration these rules were compiled from.
    pub fn config(&self) -> &RulesConfig {
        &self.config
    }

    /// The position of a type in the priority order; unlisted types after every listed one.
    pub fn rank(&self, id_type: &str) -> u16 {
        self.config
            .priority
            .iter()
            .position(|t| t == id_type)
            .map_or(u16::MAX, |p| u16::try_from(p).unwrap_or(u16::MAX - 1))
    }

    /// The most identifiers of `id_type` one customer may hold.
    pub fn limit(&self, id_type: &str) -> Option<u32> {
        self.config.limits.get(id_type).copied()
    }

    /// Why `(id_type, value)` never merges, if it is blocked.
    pub fn blocked(&self, id_type: &str, value: &str) -> Option<BlockReason> {
        let trimmed = value.trim();
        // Called for every new identifier: ASCII text (nearly all) is compared without the
        // allocation of a lower-cased copy.
        let listed = if trimmed.is_ascii() {
            self.blocked_values
                .iter()
                .any(|blocked| blocked.eq_ignore_ascii_case(trimmed))
        } else {
            self.blocked_values.contains(&trimmed.to_lowercase())
        };
        if listed {
            return Some(BlockReason::Value);
        }
        if self.config.block_repeated_digits && is_repeated_digit(trimmed) {
            return Some(BlockReason::RepeatedDigits);
        }
        self.patterns
            .iter()
            .find(|(only, regex, _)| {
                only.as_deref().is_none_or(|t| t == id_type) && regex.is_match(value)
            })
            .map(|(_, _, text)| BlockReason::Pattern(text.clone()))
    }

    /// The position of a trait source in `trait_source_priority`; unlisted after every listed one.
    pub fn source_rank(&self, source: &str) -> usize {
        self.config
            .trait_source_priority
            .iter()
            .position(|s| s == source)
            .unwrap_or(usize::MAX)
    }
}

/// Five or more of one digit, optionally after a `+` (`00000000000`, `+8611111111111` is not).
fn is_repeated_digit(value: &str) -> bool {
    let digits = value.strip_prefix('+').unwrap_or(value).as_bytes();
    digits.len() >= 5 && digits[0].is_ascii_digit() && digits.iter().all(|d| *d == digits[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_block_placeholders_and_junk() {
        let rules = Rules::default();
        assert_eq!(
            rules.blocked("phone", "00000000000"),
            Some(BlockReason::RepeatedDigits)
        );
        assert_eq!(
            rules.blocked("phone", "+11111111"),
            Some(BlockReason::RepeatedDigits)
        );
        for junk in ["", " NULL ", "undefined", "Unknown", "[object Object]", "0"] {
            assert_eq!(
                rules.blocked("user_id", junk),
                Some(BlockReason::Value),
                "{junk}"
            );
        }
        assert_eq!(rules.blocked("phone", "13800138000"), None);
        assert_eq!(rules.blocked("user_id", "nullable"), None);
        assert_eq!(rules.blocked("phone", "1111"), None);
        assert_eq!(rules.limit("user_id"), Some(1));
        assert_eq!(rules.limit("phone"), None);
        assert!(rules.rank("user_id") < rules.rank("anonymous_id"));
        assert_eq!(rules.rank("loyalty_card"), u16::MAX);
    }

    #[test]
    fn blocked_values_compare_without_case_in_any_script() {
        let rules =
            Rules::from_json(r#"{"blocked_values": ["Ünbekannt", "未知", "n/a"]}"#).unwrap();
        for junk in ["üNBEKANNT", " 未知 ", "N/A"] {
            assert_eq!(
                rules.blocked("user_id", junk),
                Some(BlockReason::Value),
                "{junk}"
            );
        }
        assert_eq!(rules.blocked("user_id", "unbekannt"), None);
        assert_eq!(rules.blocked("user_id", "未知的"), None);
    }

    #[test]
    fn patterns_apply_to_their_type_and_whole_value() {
        let rules = Rules::from_json(
            r#"{"blocked_patterns": [{"id_type": "email", "pattern": "test@.*"}]}"#,
        )
        .unwrap();
        assert!(matches!(
            rules.blocked("email", "test@example.com"),
            Some(BlockReason::Pattern(_))
        ));
        assert_eq!(rules.blocked("email", "a.test@example.com"), None);
        assert_eq!(rules.blocked("user_id", "test@example.com"), None);
        // Fields left out keep their defaults; an explicit list replaces the default one.
        assert_eq!(rules.limit("user_id"), Some(1));
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        let err = Rules::from_json(r#"{"blocked_patterns": [{"pattern": "("}]}"#).unwrap_err();
        assert!(err.to_string().contains("blocked pattern '('"), "{err}");
        let err = Rules::from_json(r#"{"limits": {"phone": 0}}"#).unwrap_err();
        assert!(err.to_string().contains("'phone' is 0"), "{err}");
        let err = Rules::from_json(r#"{"priority": ["a", "a"]}"#).unwrap_err();
        assert!(err.to_string().contains("'a' appears twice"), "{err}");
        let err = Rules::from_json(r#"{"limit": {}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
