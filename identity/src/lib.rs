//! Identity resolution for Tributary: which identifiers (cookies, device ids, WeChat OpenIDs,
//! member ids, phones, emails) belong to one customer.
//!
//! The crate is pure: no I/O, no clocks. The engine feeds it edge records (two identifiers
//! observed together, bound or unbound) from the `identities` table and from collected events,
//! and reads the resolved customers back for `identity_map`, `resolve_customer` and the profiles.
//!
//! # What the result is
//!
//! The result is a function of the records alone, so a batch recomputation and any order of
//! incremental updates give the same customers (a property test checks this):
//! 1. A pair of identifiers is *bound* when its latest record is a bind (an unbind wins a tie).
//!    A bound pair's *time* is its first bind, or its last unbind if that is later.
//! 2. Pairs touching a blocked value never merge ([`Rules::blocked`]).
//! 3. The bound pairs are taken in order of time (then of identifier) and each joins its two
//!    customers unless the joined customer would hold more identifiers of a type than the type's
//!    limit; such a pair is refused, with the reason.
//! 4. A customer's id is derived from its founding identifier: the earliest seen, then the
//!    strongest by priority. A merge therefore keeps the older customer's id, a split leaves the
//!    founder's part with the old id, and recomputation never renumbers.
//!
//! Incrementally, a pair that comes after every pair of the identifiers' connected parts is
//! applied in place (union-find, well under a microsecond); anything else (an unbind, a late
//! record) recomputes just the connected part it touches.

mod diff;
mod error;
mod graph;
mod intern;
mod record;
mod resolve;
mod rules;

pub use error::{Error, Result};
pub use graph::IdentityGraph;
pub use record::{
    Action, Change, ChangeKind, CustomerId, EdgeRecord, EdgeView, Identifier, Refusal,
};
pub use rules::{BlockReason, BlockedPattern, LifecycleThresholds, Rules, RulesConfig, TraitTable};
