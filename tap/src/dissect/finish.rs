//! A finished flow to records: its bare session, then the SMTP dissection.

use std::net::{IpAddr, SocketAddr};

use records::TapSession;

use super::classify::{client_side, looks_smtp, starts_reply, tunnel_prefix};
use super::engine::Finished;
use super::flow::{Dir, Flow};
use crate::smtp::{SessionInput, dissect_session};

/// The session record of a flow before its SMTP is read: who is the client, addresses, times,
/// volumes and what the TCP layer noticed. What is recorded of a flow that is not SMTP, or whose
/// dissection failed: every TCP session the tap sees yields a record.
pub(super) fn bare_session(flow: &Flow) -> TapSession {
    let client = client_side(flow);
    let (c, s) = client.and_other(&flow.streams);
    let (&orig, &resp) = client.and_other(&[flow.first, flow.second]);
    let ts = c.first_ts.unwrap_or(0.0).min(s.first_ts.unwrap_or(f64::MAX));
    let end = c.last_ts.max(s.last_ts);
    let mut session = TapSession {
        ts,
        uid: uid(ts, orig, resp, flow.vlans),
        vlan: Some(flow.vlans[0]).filter(|&v| v != 0),
        inner_vlan: Some(flow.vlans[1]).filter(|&v| v != 0),
        orig_h: ip_string(orig.ip()),
        orig_p: orig.port(),
        resp_h: ip_string(resp.ip()),
        resp_p: resp.port(),
        duration: (end - ts).max(0.0),
        orig_bytes: c.delivered,
        resp_bytes: s.delivered,
        gaps: (c.gaps.len() + s.gaps.len()) as u64,
        ..Default::default()
    };
    // A flow not read as SMTP dropped its bytes: its counts say the same.
    let one_sided =
        if flow.ignored { s.delivered == 0 && c.delivered > 0 } else { s.data.is_empty() && !c.data.is_empty() };
    if one_sided {
        session.notes.push("one_sided".into());
    }
    if !c.saw_syn {
        session.notes.push("mid_stream_start".into());
    }
    if flow.frag_overlap {
        session.notes.push("ip_fragment_overlap".into());
    }
    if flow.reset {
        session.notes.push("closed_by_rst".into());
    }
    session
}

/// Decides who is the client, whether the flow is SMTP, and dissects it: the session record and
/// its transactions. A flow that is not SMTP gives its bare session record, noted `no_payload`
/// (nothing was sent either way: a refused or scanned port) or `not_smtp`; `None` only for the
/// late packets of a connection already finished.
pub(super) fn finish(flow: &mut Flow, keep_messages: bool) -> Option<Finished> {
    for s in &mut flow.streams {
        s.finish();
    }
    let mut session = bare_session(flow);
    let not_smtp = |mut session: TapSession, after_close: bool| {
        if after_close {
            return None;
        }
        let payload = session.orig_bytes > 0 || session.resp_bytes > 0;
        session.notes.push(if payload { "not_smtp" } else { "no_payload" }.into());
        Some((session, Vec::new(), Vec::new()))
    };
    if flow.ignored {
        return not_smtp(session, flow.after_close);
    }
    let client = client_side(flow);
    let (c, s) = client.and_other(&flow.streams);
    let resp = if client == Dir::First { flow.second } else { flow.first };
    let tunnel = tunnel_prefix(&c.data, &s.data);
    let (c_start, s_start) = tunnel.unwrap_or((0, 0));
    // Both within their streams: the ends of the HTTP heads found there.
    let (Some(cd), Some(sd)) = (c.data.get(c_start..), s.data.get(s_start..)) else {
        return not_smtp(session, flow.after_close);
    };
    // A stand-in for a parser bug, so that a test can see what a panic costs.
    #[cfg(test)]
    assert!(!cd.starts_with(super::tests::PANIC_HELO), "test panic");
    let smtp = looks_smtp(cd, sd, !c.saw_syn);
    let implicit_tls = resp.port() == 465 && cd.first() == Some(&0x16);
    if !smtp && !implicit_tls {
        return not_smtp(session, flow.after_close);
    }
    if tunnel.is_some() {
        session.notes.insert(0, "http_connect_tunnel".into());
    }
    if implicit_tls {
        // Dated by stream offset, exact before the first gap (where record boundaries are lost
        // anyway).
        let ct = crate::tls::walk_timed(cd, |i| c.time_at((c_start + i) as u64));
        let st = crate::tls::walk_timed(sd, |i| s.time_at((s_start + i) as u64));
        session.notes.push("implicit_tls".into());
        session.starttls_used = false;
        let server_not_tls = st.not_tls;
        crate::tls::fill_session(ct, st, &mut session);
        if server_not_tls && starts_reply(sd) {
            // The server answered the ClientHello with a plaintext greeting: no TLS here.
            session.notes.push("server_not_tls".into());
            let greeting = sd.split(|&b| b == b'\n').next().unwrap_or(&[]);
            session.server_name =
                String::from_utf8_lossy(greeting.get(4..).unwrap_or(&[])).split_whitespace().next().map(str::to_string);
        }
        return Some((session, Vec::new(), Vec::new()));
    }
    let result = dissect_session(SessionInput {
        session,
        client: c,
        server: s,
        client_start: c_start,
        server_start: s_start,
        keep_messages,
    });
    Some((result.session, result.transactions, result.messages))
}

fn ip_string(ip: IpAddr) -> String {
    ip.to_canonical().to_string()
}

/// A Zeek-style connection id: stable for the same flow and start time. The VLAN ids count only
/// when there are any, so untagged flows keep the ids they always had.
fn uid(ts: f64, orig: SocketAddr, resp: SocketAddr, vlans: [u16; 2]) -> String {
    let text = match vlans {
        [0, 0] => format!("{ts:.6}{orig}{resp}"),
        [outer, inner] => format!("{ts:.6}{orig}{resp}vlan{outer}.{inner}"),
    };
    let h = crate::message::sha256_hex(text.as_bytes());
    format!("C{}", &h[..17])
}
