//! Time as an argument: the core never reads the clock itself.

use time::OffsetDateTime;

/// A point in time, to the second (the precision Latchkey stores and shows).
pub type Timestamp = OffsetDateTime;

/// Where the current time comes from. The binary passes the system clock; tests pass one they
/// move by hand, so expiry and pending periods are tested without sleeping.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// Truncates to whole seconds, the precision of every stored timestamp.
pub fn to_second(t: Timestamp) -> Timestamp {
    t.replace_nanosecond(0).unwrap_or(t)
}
