//! How much of one message on one link a passive eavesdropper got.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

/// What the tap recovered of one message on one hop, from least to most exposed.
///
/// * `Unobserved`: the tap saw no session with the hop's address 4-tuple.
/// * `Volume`: the session was seen but nothing of the message was read (STARTTLS, or the
///   capture was unreadable): only timing and byte counts leak.
/// * `Envelope`: a transaction on the session shows the hop's `MAIL FROM` in the clear.
/// * `Headers`: a transaction on the session shows the message's `Message-ID` header, but the
///   body was not recovered whole (for example a capture gap).
/// * `Content`: a transaction on the session hashes to the hop message's sha256: the
///   eavesdropper has the whole message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Exposure {
    Unobserved,
    Volume,
    Envelope,
    Headers,
    Content,
}

impl Exposure {
    /// Every class, least exposed first.
    pub const ALL: [Exposure; 5] =
        [Exposure::Unobserved, Exposure::Volume, Exposure::Envelope, Exposure::Headers, Exposure::Content];

    /// The name used in tables and reports.
    pub fn name(self) -> &'static str {
        match self {
            Exposure::Unobserved => "unobserved",
            Exposure::Volume => "volume",
            Exposure::Envelope => "envelope",
            Exposure::Headers => "headers",
            Exposure::Content => "content",
        }
    }

    /// Position in the order of exposure; larger is more exposed. Stored while computing so
    /// that "worst over hops" is a plain `max`.
    pub fn rank(self) -> u32 {
        self as u32
    }

    pub fn from_name(name: &str) -> Option<Exposure> {
        Exposure::ALL.into_iter().find(|e| e.name() == name)
    }
}

impl std::fmt::Display for Exposure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The rank of the hop from its match flags (boolean columns, no nulls), most exposed test first.
pub fn rank_expr(content: Expr, headers: Expr, envelope: Expr, seen: Expr) -> Expr {
    when(content)
        .then(lit(Exposure::Content.rank()))
        .when(headers)
        .then(lit(Exposure::Headers.rank()))
        .when(envelope)
        .then(lit(Exposure::Envelope.rank()))
        .when(seen)
        .then(lit(Exposure::Volume.rank()))
        .otherwise(lit(Exposure::Unobserved.rank()))
}

/// Turns a rank column back into class names.
pub fn name_expr(rank: Expr) -> Expr {
    Exposure::ALL.into_iter().fold(lit(NULL).cast(DataType::String), |otherwise, class| {
        when(rank.clone().eq(lit(class.rank()))).then(lit(class.name())).otherwise(otherwise)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_puts_content_on_top() {
        assert!(Exposure::Content > Exposure::Headers);
        assert!(Exposure::Headers > Exposure::Envelope);
        assert!(Exposure::Envelope > Exposure::Volume);
        assert!(Exposure::Volume > Exposure::Unobserved);
        for e in Exposure::ALL {
            assert_eq!(Exposure::from_name(e.name()), Some(e));
        }
    }
}
