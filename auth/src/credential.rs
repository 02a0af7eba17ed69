//! What a client sends in its `authorization` header: `Basic <base64 user:password>` (padded or
//! not: ADBC's Flight SQL driver leaves the padding off) or `Bearer <token>`.

use base64::Engine as _;

use crate::error::{Error, Result};

/// A parsed `authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// User name and password.
    Basic {
        /// The user name.
        name: String,
        /// The password.
        password: String,
    },
    /// A token from an earlier login.
    Bearer(String),
}

impl Credential {
    /// Parses a header value; an unknown scheme or malformed credentials are refused.
    pub fn parse(header: &str) -> Result<Self> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            return Ok(Self::Bearer(rest.to_string()));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            return decode_basic(rest);
        }
        Err(Error::Unauthenticated(
            "unsupported authorization: send 'Basic <base64 user:password>' or 'Bearer <token>'"
                .into(),
        ))
    }
}

fn decode_basic(encoded: &str) -> Result<Credential> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bad = || {
        Error::Unauthenticated(
            "malformed basic credentials: expected base64 of user:password".into(),
        )
    };
    let bytes = engine.decode(encoded).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (name, password) = text.split_once(':').ok_or_else(bad)?;
    Ok(Credential::Basic {
        name: name.to_string(),
        password: password.to_string(),
    })
}
