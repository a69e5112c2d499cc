//! What the eavesdropper should recover, worked out from the scenario alone.
//!
//! A link (ordered system pair) runs STARTTLS iff the sender's outbound policy is not `none` and
//! the receiver offers STARTTLS (`starttls = true` and inbound policy not `none`). Otherwise the
//! sender either refuses to send in the clear (outbound `encrypt`/`verify`: the message is
//! deferred), or the receiver refuses plaintext (inbound `encrypt`: 530 to MAIL), or the message
//! crosses in plaintext. With a perfect tap every plaintext hop is `content` and every STARTTLS
//! hop is `volume`, so the expected content share is the plaintext share of the hop-message
//! weight of the scenario's own traffic matrix.

use serde::{Deserialize, Serialize};

use records::SystemInfo;

/// How a message crosses one link, by the two systems' policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkMode {
    /// Both ends use STARTTLS: the tap sees volume and timing only.
    Tls,
    /// The message crosses in the clear.
    Plaintext,
    /// The sender requires TLS (`encrypt`/`verify`) but the receiver does not offer it: the
    /// message waits in the sender's queue, it is never sent in the clear.
    Deferred,
    /// The receiver requires TLS (inbound `encrypt`) but the sender does not use it: the
    /// receiver refuses the transaction (the envelope's MAIL FROM still crosses in the clear).
    Refused,
    /// A system of the pair is not in `truth/systems.json`.
    Unknown,
}

impl LinkMode {
    pub fn name(self) -> &'static str {
        match self {
            LinkMode::Tls => "tls",
            LinkMode::Plaintext => "plaintext",
            LinkMode::Deferred => "deferred",
            LinkMode::Refused => "refused",
            LinkMode::Unknown => "unknown",
        }
    }

    /// Share of this link's hop messages a perfect tap recovers in full: 1 in plaintext, 0
    /// under TLS, none where no message is sent or the policy is unknown.
    pub fn expected_content_share(self) -> Option<f64> {
        match self {
            LinkMode::Plaintext => Some(1.0),
            LinkMode::Tls => Some(0.0),
            _ => None,
        }
    }
}

/// The mode of the link from `sender` to `receiver`.
pub fn link_mode(sender: Option<&SystemInfo>, receiver: Option<&SystemInfo>) -> LinkMode {
    let (Some(sender), Some(receiver)) = (sender, receiver) else {
        return LinkMode::Unknown;
    };
    let out = sender.outbound();
    let receiver_offers = receiver.starttls && receiver.inbound() != "none";
    if out != "none" && receiver_offers {
        LinkMode::Tls
    } else if matches!(out, "encrypt" | "verify") {
        LinkMode::Deferred
    } else if receiver.inbound() == "encrypt" {
        LinkMode::Refused
    } else {
        LinkMode::Plaintext
    }
}

/// One cell of the traffic matrix: how many hop messages the scenario's traffic puts on a link
/// (one per message and distinct recipient system other than the sender's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficCell {
    pub sender_system: String,
    pub receiver_system: String,
    pub hop_messages: u64,
}

/// The analytic expectation of a scenario, beside which the measured shares are shown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Analytic {
    /// Hop-message weight on STARTTLS links.
    pub weight_tls: u64,
    /// Hop-message weight on plaintext links.
    pub weight_plaintext: u64,
    /// Hop-message weight on deferred or refused links (never sent in the clear).
    pub weight_withheld: u64,
    /// Hop-message weight on links with a system missing from `truth/systems.json`.
    pub weight_unknown: u64,
    /// `weight_plaintext / (weight_plaintext + weight_tls)`: the share of sent hop messages a
    /// perfect tap recovers in full. `None` when nothing is sent between systems.
    pub content_share: Option<f64>,
    /// `weight_withheld / (weight_plaintext + weight_tls + weight_withheld)`.
    pub withheld_share: Option<f64>,
}

/// The expectation for `matrix` under the policies of `systems`.
pub fn analytic_expectation(systems: &[SystemInfo], matrix: &[TrafficCell]) -> Analytic {
    let find = |name: &str| systems.iter().find(|s| s.name == name);
    let mut a = Analytic::default();
    for cell in matrix {
        let w = cell.hop_messages;
        match link_mode(find(&cell.sender_system), find(&cell.receiver_system)) {
            LinkMode::Tls => a.weight_tls += w,
            LinkMode::Plaintext => a.weight_plaintext += w,
            LinkMode::Deferred | LinkMode::Refused => a.weight_withheld += w,
            LinkMode::Unknown => a.weight_unknown += w,
        }
    }
    let sent = a.weight_plaintext + a.weight_tls;
    a.content_share = crate::stats::share(a.weight_plaintext, sent);
    a.withheld_share = crate::stats::share(a.weight_withheld, sent + a.weight_withheld);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn system(name: &str, starttls: bool, inbound: Option<&str>, outbound: Option<&str>) -> SystemInfo {
        SystemInfo {
            name: name.to_string(),
            domain: format!("{name}.example"),
            starttls,
            inbound_tls: inbound.map(str::to_string),
            outbound_tls: outbound.map(str::to_string),
            ..Default::default()
        }
    }

    fn cell(s: &str, r: &str, n: u64) -> TrafficCell {
        TrafficCell { sender_system: s.to_string(), receiver_system: r.to_string(), hop_messages: n }
    }

    #[test]
    fn link_modes_follow_both_policies() {
        let may = system("a", true, None, None);
        let plain = system("b", false, None, None);
        let encrypt_out = system("c", true, None, Some("encrypt"));
        let verify_out = system("d", true, None, Some("verify"));
        let encrypt_in = system("e", true, Some("encrypt"), None);
        let tls_off_out = system("f", true, None, Some("none"));
        let no_inbound = system("g", true, Some("none"), None);
        assert_eq!(link_mode(Some(&may), Some(&may)), LinkMode::Tls);
        assert_eq!(link_mode(Some(&may), Some(&plain)), LinkMode::Plaintext);
        assert_eq!(link_mode(Some(&plain), Some(&may)), LinkMode::Plaintext);
        assert_eq!(link_mode(Some(&encrypt_out), Some(&plain)), LinkMode::Deferred);
        assert_eq!(link_mode(Some(&verify_out), Some(&no_inbound)), LinkMode::Deferred);
        assert_eq!(link_mode(Some(&verify_out), Some(&may)), LinkMode::Tls);
        assert_eq!(link_mode(Some(&plain), Some(&encrypt_in)), LinkMode::Refused);
        assert_eq!(link_mode(Some(&tls_off_out), Some(&may)), LinkMode::Plaintext);
        assert_eq!(link_mode(Some(&may), Some(&no_inbound)), LinkMode::Plaintext);
        assert_eq!(link_mode(None, Some(&may)), LinkMode::Unknown);
    }

    #[test]
    fn two_of_four_with_starttls_and_a_uniform_matrix() {
        // a, b offer and use STARTTLS; c, d do not. Uniform matrix: 10 hop messages on each of
        // the 12 ordered pairs. TLS only on a->b and b->a: 20 of 120, so 100/120 in plaintext.
        let systems = vec![
            system("a", true, None, None),
            system("b", true, None, None),
            system("c", false, None, None),
            system("d", false, None, None),
        ];
        let names = ["a", "b", "c", "d"];
        let matrix: Vec<TrafficCell> =
            names.iter().flat_map(|s| names.iter().filter(move |r| *r != s).map(move |r| cell(s, r, 10))).collect();
        let a = analytic_expectation(&systems, &matrix);
        assert_eq!((a.weight_tls, a.weight_plaintext, a.weight_withheld), (20, 100, 0));
        assert_eq!(a.content_share, Some(100.0 / 120.0));
        assert_eq!(a.withheld_share, Some(0.0));
    }

    #[test]
    fn weights_count_messages_not_pairs_and_withheld_mail_is_not_plaintext() {
        let systems = vec![
            system("a", true, None, Some("encrypt")),
            system("b", true, None, None),
            system("c", false, None, None),
        ];
        // a->b TLS (30), a->c deferred (10), c->a plaintext (5), b->c plaintext (15),
        // x->a unknown (7).
        let matrix =
            vec![cell("a", "b", 30), cell("a", "c", 10), cell("c", "a", 5), cell("b", "c", 15), cell("x", "a", 7)];
        let a = analytic_expectation(&systems, &matrix);
        assert_eq!((a.weight_tls, a.weight_plaintext, a.weight_withheld, a.weight_unknown), (30, 20, 10, 7));
        assert_eq!(a.content_share, Some(20.0 / 50.0));
        assert_eq!(a.withheld_share, Some(10.0 / 60.0));
        assert_eq!(analytic_expectation(&systems, &[]).content_share, None);
    }
}
