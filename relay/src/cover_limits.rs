//! The sizes and rate cover traffic may be asked for: checked in the delivery options
//! ([`crate::config::DeliveryOptions::check`]) and a generator's configuration
//! ([`crate::cover::CoverConfig::check`]), and named in their errors.

/// Cover messages are at least this big (a header section) and at most the relay's message limit.
pub const COVER_MIN_BYTES: u64 = 300;
pub const COVER_MAX_BYTES: u64 = 50 << 20;
/// The most cover messages per second a system may be asked for.
pub const COVER_MAX_RATE: f64 = 1000.0;
