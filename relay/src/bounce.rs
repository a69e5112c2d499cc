//! Delivery status notifications (RFC 3464): a message that failed permanently goes back to its
//! sender as a `multipart/report`, sent with the null reverse-path so it can never bounce again.

use crate::spool::Envelope;

/// Builds the DSN for `failed` (recipient, reason) of the message `env`, whose head is `original`.
pub fn build(hostname: &str, qid: &str, env: &Envelope, failed: &[(String, String)], original: &[u8]) -> Vec<u8> {
    let date =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc2822).unwrap_or_default();
    let boundary = format!("{qid}/{hostname}");
    let head_end = original.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 2).unwrap_or(original.len());
    let mut text = String::new();
    text.push_str(&format!("From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n"));
    text.push_str(&format!("To: <{}>\r\n", env.mail_from));
    text.push_str("Subject: Undelivered Mail Returned to Sender\r\n");
    text.push_str(&format!("Date: {date}\r\n"));
    text.push_str(&format!("Message-ID: <{qid}.dsn@{hostname}>\r\n"));
    text.push_str("Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
    text.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
    ));
    text.push_str(&format!("--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"));
    text.push_str(&format!(
        "This is the mail system at host {hostname}.\r\n\r\nYour message could not be delivered to one or more recipients.\r\n\r\n"
    ));
    for (rcpt, why) in failed {
        text.push_str(&format!("<{rcpt}>: {why}\r\n"));
    }
    text.push_str(&format!("\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"));
    text.push_str(&format!("Reporting-MTA: dns; {hostname}\r\nX-Smtplab-Queue-ID: {}\r\n", env.qid));
    for (rcpt, why) in failed {
        let status = why.split_whitespace().find(|w| w.starts_with("5.") && w.len() >= 5).unwrap_or("5.0.0");
        text.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {status}\r\nDiagnostic-Code: smtp; {why}\r\n"
        ));
    }
    text.push_str(&format!("\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"));
    let mut out = text.into_bytes();
    out.extend_from_slice(&original[..head_end]);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}
