//! Latchkey's pure domain.
//!
//! Owns the rules that decide things: token strings and their checksum, ids, durations, token
//! types and their policies, token statuses and the reasons a token is refused, roles, names.
//! Must not do I/O, read the clock or the environment: time comes in as an argument, randomness
//! as bytes the caller drew. Everything here is unit-testable without a server.

pub mod base62;
pub mod clock;
pub mod duration;
pub mod ids;
pub mod limits;
pub mod names;
pub mod oauth;
pub mod oidc;
pub mod outbound;
pub mod policy;
pub mod role;
pub mod scim;
pub mod token;
pub mod token_string;

pub use clock::{Clock, Timestamp};
pub use duration::PolicyDuration;
pub use ids::{ClientId, EventId, InstanceId, MailId, OrgId, SecretId, SessionId, TokenId, UserId};
pub use names::{Email, OrgName, TokenName};
pub use policy::{Format, Grace, OwnerKind, Reveal, TokenTypePolicy, TokenTypes};
pub use role::Role;
pub use token::{Refusal, TokenStatus};
pub use token_string::{Prefix, TokenHash, TokenSecret};
