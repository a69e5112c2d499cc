//! The command line of `smtplab relay` for one system of a netns or Shadow run, where each relay
//! is a process of its own (the loopback backend runs relays as tasks and needs none).

use std::path::Path;

use relay::TlsIdentity;

use crate::error::ScenarioError;
use crate::schema::Scenario;

/// Command-line arguments of `smtplab relay` for system `i` of a netns or Shadow run.
pub(crate) fn process_args(
    s: &Scenario,
    i: usize,
    dir: &Path,
    ca: &Path,
    identity: Option<&TlsIdentity>,
) -> Result<Vec<String>, ScenarioError> {
    let sys = &s.systems[i];
    let ip = s.address(i);
    let p = |x: &Path| x.display().to_string();
    let mut a: Vec<String> = vec![
        "--listen".into(),
        format!("{ip}:{}", s.network.smtp_port),
        "--submission".into(),
        format!("{ip}:{}", s.network.submission_port),
        "--bind".into(),
        ip.to_string(),
        "--hostname".into(),
        sys.mx_host(),
        "--system".into(),
        sys.name.clone(),
        "--spool".into(),
        p(&dir.join("spool")),
        "--mailbox-dir".into(),
        p(&dir.join("mailboxes")),
        "--local-domain".into(),
        sys.domain.clone(),
        // The injector submits from the root namespace's address on the bridge.
        "--relay-client".into(),
        crate::netns::ROOT_ADDR.to_string(),
        "--records".into(),
        p(&dir.join("sessions.jsonl")),
        "--keylog".into(),
        p(&dir.join("keys.log")),
        "--inbound-tls".into(),
        serde_json::to_value(sys.inbound()).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
        "--outbound-tls".into(),
        serde_json::to_value(sys.outbound()).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
        "--ca".into(),
        p(ca),
        "--retry-first".into(),
        "1".into(),
        "--retry-max".into(),
        "10".into(),
    ];
    if let Some(id) = identity {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &id.cert_chain_pem).map_err(ScenarioError::io(p(&cert)))?;
        std::fs::write(&key, &id.key_pem).map_err(ScenarioError::io(p(&key)))?;
        a.extend(["--tls-cert".into(), p(&cert), "--tls-key".into(), p(&key)]);
    }
    for (flag, list) in
        [("--tls-versions", &sys.tls.versions), ("--tls-ciphers", &sys.tls.ciphers), ("--tls-groups", &sys.tls.groups)]
    {
        if !list.is_empty() {
            a.extend([flag.to_string(), list.join(",")]);
        }
    }
    a.extend(crate::dns::relay_process_args(s));
    Ok(a)
}
