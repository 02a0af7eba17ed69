//! When a stored segment is refreshed: by hand (`'manual'`), on every change of the tenant's
//! data (`'realtime'`), or every fixed interval (`'1 hour'`, `'15 minutes'`).

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};

/// A stored segment's schedule (`CREATE SEGMENT … SCHEDULE '…'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Refreshed by `REFRESH SEGMENT` only.
    Manual,
    /// Refreshed after the tenant's events or identities change (and at least every
    /// [`Schedule::REALTIME_AT_LEAST`], for windows that move with the clock).
    Realtime,
    /// Refreshed when this long has passed since the last refresh.
    Every(Duration),
}

const UNITS: &[(&str, u64)] = &[
    ("second", 1),
    ("minute", 60),
    ("hour", 3600),
    ("day", 86_400),
    ("week", 604_800),
];

impl Schedule {
    /// A realtime segment is re-evaluated at least this often, data changed or not.
    pub const REALTIME_AT_LEAST: Duration = Duration::from_secs(60);

    /// Reads `'manual'`, `'realtime'` or `'<n> <unit>'` (second, minute, hour, day, week;
    /// singular or plural), ignoring case.
    pub fn parse(text: &str) -> Result<Self> {
        let trimmed = text.trim().to_ascii_lowercase();
        match trimmed.as_str() {
            "manual" => return Ok(Self::Manual),
            "realtime" => return Ok(Self::Realtime),
            _ => {}
        }
        let refuse = || {
            Error::InvalidInput(format!(
                "schedule '{text}' is not 'manual', 'realtime' or an interval such as '1 hour' \
                 or '15 minutes' (units: second, minute, hour, day, week)"
            ))
        };
        let mut words = trimmed.split_whitespace();
        let (Some(count), Some(unit), None) = (words.next(), words.next(), words.next()) else {
            return Err(refuse());
        };
        let count: u64 = count.parse().map_err(|_| refuse())?;
        let unit = unit.strip_suffix('s').unwrap_or(unit);
        let seconds = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .and_then(|(_, seconds)| count.checked_mul(*seconds))
            .filter(|s| *s > 0 && *s <= 366 * 86_400)
            .ok_or_else(refuse)?;
        Ok(Self::Every(Duration::from_secs(seconds)))
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Manual => f.write_str("manual"),
            Self::Realtime => f.write_str("realtime"),
            Self::Every(interval) => {
                let seconds = interval.as_secs();
                let (name, size) = UNITS
                    .iter()
                    .rev()
                    .find(|(_, size)| seconds % size == 0)
                    .expect("every interval is whole seconds");
                let count = seconds / size;
                write!(f, "{count} {name}{}", if count == 1 { "" } else { "s" })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_read_and_print_canonically() {
        for (text, shown) in [
            ("manual", "manual"),
            ("REALTIME", "realtime"),
            ("1 hour", "1 hour"),
            ("90 minutes", "90 minutes"),
            ("120 Minutes", "2 hours"),
            (" 7 days ", "1 week"),
            ("5 second", "5 seconds"),
        ] {
            assert_eq!(Schedule::parse(text).unwrap().to_string(), shown, "{text}");
        }
    }

    #[test]
    fn bad_schedules_are_refused_by_name() {
        for text in [
            "",
            "hourly",
            "0 hours",
            "-1 hour",
            "1.5 hours",
            "1 fortnight",
            "1 hour x",
            "400 days",
        ] {
            let error = Schedule::parse(text).unwrap_err().to_string();
            assert!(error.contains(&format!("'{text}'")), "{error}");
        }
    }
}
