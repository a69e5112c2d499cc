//! The report's prose: what each section and figure shows, written once for both renderings
//! (the HTML page, `html`, and `summary.md`, `markdown`).

/// What the numbers measure, for a reader who did not set up the run.
pub const THREAT_MODEL: &str = "This report measures what a passive eavesdropper on the network links \
between mail systems recovers: an observer who records every packet exchanged between the systems' \
relays but cannot alter traffic or break TLS. Each count is checked against the ground truth logged by \
the relays themselves. Where a link runs in plaintext, every message crosses it readable; where both \
relays negotiate STARTTLS, the eavesdropper should recover no content at all, yet it still sees which \
systems exchange mail, when, and how many bytes: STARTTLS hides content, not system-to-system volume.";

/// What each exposure class means, as listed under the exposure chart.
pub const CLASSES: [(&str, &str); 5] = [
    ("content", "the tap reassembled the whole message (its sha256 matches the one the sending relay recorded)"),
    (
        "headers",
        "the tap read the message's header block (Subject, From or To, tied to the message by its Message-ID) but not the whole message",
    ),
    ("envelope", "the tap read the SMTP envelope in the clear (the hop's MAIL FROM or one of its RCPT TO)"),
    ("volume", "the tap saw the session, but encrypted: timing and sizes only"),
    ("unobserved", "the tap saw nothing of the session (the line was not tapped)"),
];

/// The caption of the defense × attack heatmaps.
pub const ATTACK_HEATMAP: &str = "Each row is the outbound TLS policy of the sending systems (the defense), each column \
    the attack on the path to the recipient's MX (`none`: no attacker there). A cell's share is of that cell's recipient \
    copies; a dash: no copy fell in it. Read together: a defense works where the first panel is pale; what it costs \
    shows in the third; whether the victim would notice, in the fourth.";

/// The caption of the sweep's leak-versus-cost figure.
pub const FRONTIER: &str = "Each marker is a sweep point (mean over its seeds): what the eavesdropper still \
    gets wrong or right against what the countermeasures cost. The message-count error is the relative error of \
    its count of messages from TLS record shapes (cover traffic inflates it: higher hides more); the linkage \
    precision is the share of its user→system guesses that were right, on tapped access lines whose hops were all \
    STARTTLS (lower hides more). Costs: bytes on the wire per byte of mail carried (top), and the 99th-percentile \
    delay from submission to mailbox (bottom). The dashed line joins the points no cheaper point beats.";

/// The caption of the sweep's effort curves.
pub const EFFORT: &str = "The 1997 proposal bet that an active attacker cannot read mail \"on a grand scale\". Each \
    point is a sweep point: the share of the scenario's domains whose MX an attacker intercepts (its effort) against \
    the share of all mail a defense's senders sent that an attacker read (top) and that their TLS-RPT reports would \
    have shown attacked (bottom), mean over seeds with its 95% band; `all senders` pools every policy. A defense \
    that holds keeps its top curve flat at zero at any effort; what it costs is the held-back share in the table.";

/// What the attack matrix shows, for the HTML and Markdown reports.
pub const ATTACKERS: &str = "Each active attacker in the scenario stands in front of the MX of the domains it \
    intercepts (the scenario's DNS sends the senders to it) and relays the mail onward. Per sender policy (the \
    defense) and attack on the path: the share of recipient copies an attacker read (from its own records), and \
    what became of them (from the relays' records). A fake MX's copies count as delivered over TLS, and read.";

/// How the eavesdropper's estimates are made, for the volume section.
pub const ESTIMATOR: &str = "The estimates use the tap's records alone. A plaintext session counts the mail \
transactions the tap read, and their message sizes. A STARTTLS session counts as one message when the client \
sent at least 300 bytes of TLS application data (smtplab's relay moves one message per session; a session \
without a message carries only the TLS Finished, EHLO and QUIT), and its message size is the client's \
application-data bytes minus 315 bytes of per-session SMTP and TLS-record overhead.";

pub const LINKAGE: &str = "Some users' access lines were tapped as well as the lines between systems. For each \
message seen on a tapped access line, the eavesdropper takes as candidates the sending system's outbound \
observations consistent with it in time (after the submission, within 10 s) and size (the relay's Received \
header added), and in plaintext with its MAIL FROM and Message-ID, keeping only the systems the To and Cc \
headers name once a plaintext hop's Message-ID identifies the message; it guesses the user wrote to every receiving \
system among them (ANALYSIS.md, \"Linkage across hops\").";

pub const LINKAGE_FIGURE: &str = "Messages by anonymity set (the number of consistent outbound observations), \
for messages whose hops were all plaintext and all STARTTLS.";

/// One sentence per scope of `analysis/linkage_summary`.
pub fn linkage_lines(rows: &[analysis::LinkageSummary]) -> Vec<String> {
    let num = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.2}"));
    rows.iter()
        .map(|r| {
            let scope = match r.scope.as_str() {
                "tls" => "STARTTLS hops",
                "plaintext" => "plaintext hops",
                _ => "all messages",
            };
            format!(
                "{scope}: {} messages, median anonymity set {}, mean entropy {} bits, user → recipient-system \
                 precision {}, recall {}",
                r.messages,
                num(r.median_anonymity_set),
                num(r.mean_entropy_bits),
                num(r.precision),
                num(r.recall)
            )
        })
        .collect()
}
