//! The outbound side: delivering a queued message to the next system's MX, with STARTTLS per
//! policy, and recording the session. The open connection's I/O is [`crate::client`]'s, the
//! session kept for further transactions [`crate::outbound_session`]'s.

use std::sync::Arc;

use proto::client;
use proto::{Capabilities, ReplyParser};
use records::SessionRecord;
use rustls::pki_types::ServerName;
use tokio::net::TcpSocket;

use crate::client::{Client, Failure, FailureKind};
use crate::config::OutboundTls;
use crate::dane::{DaneFailure, DanePlan, Tlsa, TlsaAnswer};
use crate::mta_sts::{self, Mode, StsFailure};
use crate::outbound_session::Session;
use crate::requiretls::MessageTls;
use crate::resolver::MxTarget;
use crate::shared::Shared;
use crate::spool::Envelope;
use crate::tlsrpt::{FailureDetails, ResultType};
use crate::transport::Transport;

/// What became of one recipient: `proto`'s, which the mail transaction decides.
pub use proto::RcptOutcome;

/// Delivers `message` to `rcpts`, all in `domain`, over a cached session to the domain when
/// there is one (connection reuse, `crate::connection_cache`) or a new one, and writes the
/// session record when the session ends.
pub(crate) async fn deliver_remote(
    shared: &Arc<Shared>,
    env: &Envelope,
    domain: &str,
    rcpts: &[String],
    message: &[u8],
) -> Vec<(String, RcptOutcome)> {
    let dest = crate::domain::normalize_domain(domain);
    shared.batches.hold(&dest, &env.message_id).await;
    let (lease, cached) = shared.connections.checkout(&dest).await;
    // A REQUIRETLS message goes over a cached session only if that session could carry it.
    let cached = cached.filter(|s| !env.requiretls || s.carries_requiretls());
    if let Some(mut session) = cached {
        match session.deliver(&shared.cfg, env, rcpts, message, true).await {
            Ok(outcomes) => {
                session.keep_or_close(&shared.connections, &dest).await;
                drop(lease);
                return outcomes;
            }
            // The cached session was found dead before the server heard of this message
            // (no reply to RSET or MAIL): Postfix then opens a new one, and so does this.
            Err(f) if session.unanswered() => session.fail(&f),
            Err(f) => {
                session.fail(&f);
                drop(lease);
                return rcpts.iter().map(|r| (r.clone(), RcptOutcome::Deferred(f.why.clone()))).collect();
            }
        }
    }
    let outcomes = deliver_new(shared, &dest, env, domain, rcpts, message).await;
    drop(lease);
    outcomes
}

/// Opens a session to the first of `domain`'s MX targets that answers, and delivers over it.
async fn deliver_new(
    shared: &Arc<Shared>,
    dest: &str,
    env: &Envelope,
    domain: &str,
    rcpts: &[String],
    message: &[u8],
) -> Vec<(String, RcptOutcome)> {
    let targets = match shared.cfg.resolver.resolve(domain).await {
        Ok(targets) => targets,
        Err(e) => {
            tracing::warn!("{}: delivery to {domain} deferred: {e}", shared.cfg.system);
            return rcpts.iter().map(|r| (r.clone(), RcptOutcome::Deferred(e.to_string()))).collect();
        }
    };
    if targets.is_empty() {
        let why = format!("no MX route for domain {domain}");
        return rcpts.iter().map(|r| (r.clone(), RcptOutcome::Failed(why.clone()))).collect();
    }
    // MTA-STS (RFC 8461 §5): `enforce` turns the outbound policy into `verify` for this domain
    // and admits only the MX hosts the policy names.
    let sts = match &shared.mta_sts {
        Some(m) => m.lookup(domain).await,
        None => mta_sts::Lookup::default(),
    };
    // The message's own demand (REQUIRETLS, `TLS-Required: No`) over the relay's policy.
    let demand = MessageTls::of(env.requiretls, message);
    let mut policy = demand.policy(shared.cfg.outbound_policy(domain));
    let sts_enforces = sts.mode() == Some(Mode::Enforce) && demand != MessageTls::NotRequired;
    // RFC 8461 §2: a sender that implements DANE and MTA-STS lets DANE decide where the MX host
    // has a DNSSEC-secure TLSA RRset; `enforce` applies (as `verify`) where it has none, below.
    let dane_sender = matches!(policy, OutboundTls::Dane | OutboundTls::DaneOnly);
    if sts_enforces && !dane_sender {
        policy = OutboundTls::Verify;
    }
    let requiretls = demand == MessageTls::RequireTls;
    // The MTA-STS policy TLS-RPT reports sessions under when DANE does not take them: one in
    // force in a mode that asks for TLS, for a message that does not opt out of it.
    let sts_in_force = sts
        .applied
        .as_ref()
        .filter(|a| matches!(a.policy.mode, Mode::Enforce | Mode::Testing) && demand != MessageTls::NotRequired);
    let mut last = Failure::transient("no MX target tried");
    // RFC 8689 §4.2.1: an MX that cannot keep a REQUIRETLS message on verified TLS is skipped;
    // when none can, the message bounces rather than waits.
    let mut requiretls_refusals = 0;
    for target in &targets {
        let mut rec = SessionRecord {
            direction: "outbound".into(),
            system: shared.cfg.system.clone(),
            peer_system: target.system.clone(),
            started_at: crate::now_secs(),
            peer_addr: target.addr.to_string(),
            peer_name: Some(target.host.clone()),
            ehlo_name: Some(shared.cfg.hostname.clone()),
            ..Default::default()
        };
        sts.annotate(&mut rec);
        let outside =
            sts.applied.as_ref().filter(|a| a.policy.mode != Mode::None && !a.policy.matches_mx(&target.host));
        if let Some(a) = outside {
            let f = StsFailure::MxNotInPolicy(target.host.clone());
            mta_sts::record_failure(&mut rec, &f);
            if a.policy.mode == Mode::Enforce {
                // Never connected: the record says which MX was refused and why, and the
                // policy's report counts the refusal (the MX the sender was given is not one
                // the domain vouches for: a misconfiguration or a forged MX record).
                let refused = Failure::tls(f.to_string(), f.tlsrpt_result());
                report_tls(shared, &crate::tlsrpt::sts(domain, &a.policy), target, policy, &rec, Some(&refused));
                rec.ended_at = crate::now_secs();
                rec.outcome = "deferred".into();
                rec.error = Some(f.to_string());
                shared.records.write(&rec);
                last = Failure::transient(f.to_string());
                continue;
            }
        }
        // DANE decides before connecting (RFC 7672 §2.2): a bogus TLSA answer skips this host.
        let mut planned = plan_for(shared, target, policy).await;
        if let Ok(p) = &mut planned
            && sts_enforces
            && p.rrset.is_none()
        {
            // No DANE for this host: the MTA-STS policy in force governs it.
            p.policy = OutboundTls::Verify;
        }
        let reported = match &planned {
            Ok(Planned { rrset: Some(rrset), .. }) => crate::tlsrpt::tlsa(domain, &target.host, rrset),
            Err(_) => crate::tlsrpt::tlsa(domain, &target.host, &[]),
            Ok(_) => match sts_in_force {
                Some(a) => crate::tlsrpt::sts(domain, &a.policy),
                None => crate::tlsrpt::no_policy_found(domain, &target.host),
            },
        };
        let opened = std::time::Instant::now();
        let session = match planned {
            Ok(p) => Client::session(shared, target, p.policy, &p.plan, sts.mode(), requiretls, rec).await,
            Err(f) => {
                let f = dane_failure(&mut rec, f);
                Err((rec, f))
            }
        };
        let result = match session {
            Ok((client, caps)) => {
                report_tls(shared, &reported, target, policy, &client.rec, None);
                let mut session = Session::new(&shared.records, client, caps, opened);
                match session.deliver(&shared.cfg, env, rcpts, message, false).await {
                    Ok(outcomes) => {
                        session.keep_or_close(&shared.connections, dest).await;
                        Ok(outcomes)
                    }
                    Err(f) => {
                        session.fail(&f);
                        Err(f)
                    }
                }
            }
            Err((mut rec, f)) => {
                report_tls(shared, &reported, target, policy, &rec, Some(&f));
                rec.ended_at = crate::now_secs();
                rec.outcome = if f.permanent { "bounced" } else { "deferred" }.into();
                rec.error = Some(f.why.clone());
                shared.records.write(&rec);
                Err(f)
            }
        };
        match result {
            Ok(outcomes) => return outcomes,
            Err(mut f) => {
                if requiretls && f.kind != FailureKind::Other {
                    requiretls_refusals += 1;
                    f.why = match f.kind {
                        FailureKind::NoRequireTls => crate::requiretls::no_requiretls(&target.host),
                        _ => crate::requiretls::no_tls(&target.host, &f.why),
                    };
                }
                tracing::warn!(
                    "{}: delivery to {} ({}) failed: {}",
                    shared.cfg.system,
                    target.host,
                    target.addr,
                    f.why
                );
                if f.permanent {
                    return rcpts.iter().map(|r| (r.clone(), RcptOutcome::Failed(f.why.clone()))).collect();
                }
                last = f;
            }
        }
    }
    if requiretls && requiretls_refusals == targets.len() {
        return rcpts.iter().map(|r| (r.clone(), RcptOutcome::Failed(last.why.clone()))).collect();
    }
    rcpts.iter().map(|r| (r.clone(), RcptOutcome::Deferred(last.why.clone()))).collect()
}

/// Adds one session to the TLS-RPT aggregate under `reported`, the policy it ran under, by the
/// rules in [`crate::tlsrpt`]: `none` never reports; a TLS failure the policy noticed is a
/// failure; then what MTA-STS recorded in the session (a `testing` policy's would-be failure,
/// or a policy that could not be fetched); then a plaintext fallback under a published policy;
/// TLS that met the policy is a success; a failure unrelated to TLS before any TLS is not
/// counted. `policy` is the sender's policy for the message, `failure` the session's, if it
/// failed. Sessions are counted when they open (a reused session is one session), as RFC 8460
/// counts sessions, not messages.
fn report_tls(
    shared: &Shared,
    reported: &crate::tlsrpt::Policy,
    target: &MxTarget,
    policy: OutboundTls,
    rec: &SessionRecord,
    failure: Option<&Failure>,
) {
    use crate::tlsrpt::PolicyType;
    if policy == OutboundTls::None {
        return;
    }
    let failed = |result_type: ResultType, why: Option<String>| {
        let sending = rec.local_addr.parse::<std::net::SocketAddr>().ok().map(|a| a.ip().to_string());
        shared.tlsrpt.failure(
            reported,
            FailureDetails {
                result_type,
                sending_mta_ip: sending.or_else(|| shared.cfg.bind.map(|ip| ip.to_string())),
                receiving_mx_hostname: Some(target.host.clone()),
                receiving_mx_helo: None,
                receiving_ip: Some(target.addr.ip().to_string()),
                failed_session_count: 1,
                additional_information: None,
                // The relay's own words, as RFC 8460 §4.4 allows implementations to add.
                failure_reason_code: why,
            },
        );
    };
    // What MTA-STS recorded: a failure to get the policy counts under `sts` (a cached policy)
    // or `no-policy-found`; a session's failure of a `testing` policy only under `sts`. Under
    // DANE the MTA-STS policy was not applied.
    let sts_failure =
        rec.mta_sts_failure.as_deref().and_then(ResultType::from_name).filter(|r| match reported.policy_type {
            PolicyType::Sts => true,
            PolicyType::NoPolicyFound => r.is_sts_policy_failure(),
            PolicyType::Tlsa => false,
        });
    match failure.map(|f| (f.kind, f)) {
        Some((FailureKind::Tls(result_type), f)) => failed(result_type, Some(f.why.clone())),
        Some((FailureKind::Other, _)) => {}
        // Established, or refused for lack of REQUIRETLS after TLS.
        _ => {
            if let Some(result_type) = sts_failure {
                failed(result_type, rec.mta_sts_failure_detail.clone());
            } else if !rec.starttls_used && crate::tlsrpt::counts_plaintext(reported.policy_type) {
                failed(
                    ResultType::StarttlsNotSupported,
                    Some(format!("{} went on in plaintext (policy {policy:?})", target.host)),
                );
            } else if rec.starttls_used {
                shared.tlsrpt.success(reported);
            }
        }
    }
}

/// What the TLSA lookup decided for one session to one MX host.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Planned {
    /// The policy the session runs under.
    pub policy: OutboundTls,
    pub plan: DanePlan,
    /// The DNSSEC-secure TLSA RRset the plan rests on, every record of it, usable or not: the
    /// DANE policy in force, which TLS-RPT reports as `tlsa` (RFC 8460 §4.4). `None` when no
    /// secure RRset was used (the policy is not DANE, or the answer was insecure).
    pub rrset: Option<Vec<Tlsa>>,
}

/// The policy a session to `target` runs under and its DANE plan: `dane` and `dane-only` look up
/// the host's TLSA records and become `may` (no DANE), `encrypt` (secure but unusable records)
/// or stay as they are with records to authenticate; other policies pass through untouched.
async fn plan_for(shared: &Shared, target: &MxTarget, policy: OutboundTls) -> Result<Planned, DaneFailure> {
    let only = match policy {
        OutboundTls::Dane => false,
        OutboundTls::DaneOnly => true,
        other => return Ok(Planned { policy: other, plan: DanePlan::Opportunistic, rrset: None }),
    };
    let answer = shared.cfg.resolver.tlsa(&target.host).await?;
    let rrset = match &answer {
        TlsaAnswer::Secure(records) => Some(records.clone()),
        TlsaAnswer::NotSecure => None,
    };
    let plan = DanePlan::decide(&target.host, answer, only)?;
    let effective = match &plan {
        DanePlan::Opportunistic => OutboundTls::May,
        DanePlan::EncryptOnly => OutboundTls::Encrypt,
        DanePlan::Authenticate(_) => policy,
    };
    Ok(Planned { policy: effective, plan, rrset })
}

/// Records a DANE failure's RFC 8460 result type in the session and defers.
fn dane_failure(rec: &mut SessionRecord, f: crate::dane::DaneFailure) -> Failure {
    rec.dane_failure = Some(f.result_type().to_string());
    Failure::tls(f.to_string(), f.tlsrpt_result())
}

// Opening a client session under the relay's policies (DANE, MTA-STS, REQUIRETLS, the outbound
// TLS policy) is delivery's part, beside the decisions it carries out; the connection's own I/O,
// once open, is `crate::client`'s.
impl Client {
    /// Connects, reads the greeting, says EHLO and does STARTTLS per `policy` and its DANE plan
    /// (`plan_for`, made by the caller before connecting): a session ready for its first
    /// transaction, with the server's capabilities. On failure the record comes back so that
    /// the caller writes it.
    async fn session(
        shared: &Arc<Shared>,
        target: &MxTarget,
        policy: OutboundTls,
        dane: &crate::dane::DanePlan,
        sts: Option<Mode>,
        requiretls: bool,
        mut rec: SessionRecord,
    ) -> Result<(Client, Capabilities), (SessionRecord, Failure)> {
        let mut c = match Self::connect(shared, target, &mut rec).await {
            Ok(c) => c,
            Err(f) => return Err((rec, f)),
        };
        let caps = match c.greet(shared, target, policy, sts, dane).await {
            Ok(caps) => caps,
            Err(f) => return Err((c.rec, f)),
        };
        if requiretls {
            // RFC 8689 §4.2.1: a verified server (WebPKI or DANE) that offers REQUIRETLS, or
            // none: the message is not handed over.
            if !crate::requiretls::satisfies_requiretls(c.authentication()) {
                let f = Failure::tls("the server was not authenticated", ResultType::ValidationFailure);
                c.quit().await;
                return Err((c.rec, f));
            }
            if !caps.has(crate::requiretls::KEYWORD) {
                c.quit().await;
                return Err((
                    c.rec,
                    Failure { permanent: false, why: "no REQUIRETLS".into(), kind: FailureKind::NoRequireTls },
                ));
            }
        }
        Ok((c, caps))
    }

    async fn connect(shared: &Arc<Shared>, target: &MxTarget, rec: &mut SessionRecord) -> Result<Client, Failure> {
        let cfg = &shared.cfg;
        let socket = if target.addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
            .map_err(|e| Failure::transient(format!("socket: {e}")))?;
        if let Some(ip) = cfg.bind {
            socket
                .bind(std::net::SocketAddr::new(ip, 0))
                .map_err(|e| Failure::transient(format!("cannot bind to {ip}: {e}")))?;
        }
        let tcp = tokio::time::timeout(cfg.timeouts.greeting, socket.connect(target.addr))
            .await
            .map_err(|_| Failure::transient(format!("connect to {} timed out", target.addr)))?
            .map_err(|e| Failure::transient(format!("connect to {}: {e}", target.addr)))?;
        rec.local_addr = tcp.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let _ = tcp.set_nodelay(true);
        Ok(Client {
            io: Transport::Plain(tcp),
            replies: ReplyParser::new(cfg.limits.max_line),
            rec: std::mem::take(rec),
            timeout: cfg.timeouts.command,
            max_reply_bytes: cfg.limits.max_reply_bytes,
            end_of_data: None,
        })
    }

    async fn greet(
        &mut self,
        shared: &Arc<Shared>,
        target: &MxTarget,
        policy: OutboundTls,
        sts: Option<Mode>,
        dane: &crate::dane::DanePlan,
    ) -> Result<Capabilities, Failure> {
        let cfg = &shared.cfg;
        let c = self;
        client::greeting(&c.reply_within(cfg.timeouts.greeting).await?)?;
        let mut caps = c.ehlo(&cfg.hostname).await?;
        c.rec.starttls_offered = caps.starttls();
        // Under an MTA-STS policy (testing or enforce) a missing or refused STARTTLS is a
        // reportable failure, whether or not the outbound policy lets the mail go on.
        let under_sts = matches!(sts, Some(Mode::Enforce | Mode::Testing));
        if under_sts && policy != OutboundTls::None && !caps.starttls() {
            mta_sts::record_failure(&mut c.rec, &StsFailure::StartTlsNotSupported(target.host.clone()));
        }
        match policy {
            OutboundTls::None => {}
            _ if caps.starttls() => {
                let r = c.command("STARTTLS").await?;
                if r.code == 220 {
                    c.upgrade(shared, target, policy, sts, dane).await?;
                    caps = c.ehlo(&cfg.hostname).await?;
                } else {
                    if under_sts {
                        let why = format!("{} (STARTTLS refused: {})", target.host, r.summary());
                        mta_sts::record_failure(&mut c.rec, &StsFailure::StartTlsNotSupported(why));
                    }
                    if policy != OutboundTls::May {
                        let why = format!("STARTTLS refused ({}); policy {policy:?} requires TLS", r.summary());
                        return Err(c.tls_required(dane, target, why));
                    }
                }
            }
            OutboundTls::May => {}
            _ => {
                let why = format!("{} does not offer STARTTLS; policy {policy:?} requires TLS", target.host);
                return Err(c.tls_required(dane, target, why));
            }
        }
        Ok(caps)
    }

    /// A policy that requires TLS did not get it; under DANE that is a report-worthy failure.
    fn tls_required(&mut self, dane: &crate::dane::DanePlan, target: &MxTarget, why: String) -> Failure {
        if *dane == crate::dane::DanePlan::Opportunistic {
            return Failure::tls(why, ResultType::StarttlsNotSupported);
        }
        dane_failure(&mut self.rec, crate::dane::DaneFailure::StarttlsNotSupported { host: target.host.clone(), why })
    }

    async fn upgrade(
        &mut self,
        shared: &Shared,
        target: &MxTarget,
        policy: OutboundTls,
        sts: Option<Mode>,
        dane: &crate::dane::DanePlan,
    ) -> Result<(), Failure> {
        if self.replies.pending() > 0 {
            // The server sent more after its 220 in plaintext: response injection (the NO
            // STARTTLS study). Whatever it says must not be believed after the handshake.
            return Err(Failure::transient("server sent data after its 220 to STARTTLS (response injection)"));
        }
        let mut dane_slot = None;
        let config = match (policy, dane) {
            (_, crate::dane::DanePlan::Authenticate(records)) => {
                let (config, slot) = crate::dane::client_config(&shared.tls_client_any, &target.host, records);
                dane_slot = Some(slot);
                config
            }
            (OutboundTls::Verify, _) => shared.tls_client_verify.clone().ok_or_else(|| {
                Failure::tls(
                    "policy verify needs a CA (--ca or the scenario CA) and none is configured",
                    ResultType::ValidationFailure,
                )
            })?,
            _ => shared.tls_client_any.clone(),
        };
        let name = ServerName::try_from(target.host.clone())
            .map_err(|e| Failure::transient(format!("bad MX name {}: {e}", target.host)))?;
        let Some(tcp) = self.io.take_plain() else {
            return Err(Failure::transient("STARTTLS on an encrypted connection"));
        };
        let handshake = tokio::time::timeout(self.timeout, tokio_rustls::TlsConnector::from(config).connect(name, tcp))
            .await
            .map_err(|_| Failure::tls("TLS handshake timed out", ResultType::ValidationFailure))?;
        let stream = match handshake {
            Ok(stream) => stream,
            Err(e) => {
                if sts.is_some_and(|m| m != Mode::None)
                    && let Some(f) = StsFailure::from_handshake(&e)
                {
                    mta_sts::record_failure(&mut self.rec, &f);
                }
                // The DANE verifier left the typed reason of its refusal; the handshake error only
                // carries its text.
                let refused = dane_slot.and_then(|slot| slot.lock().ok().and_then(|mut s| s.take()));
                return Err(match refused {
                    Some(f) => dane_failure(&mut self.rec, f),
                    None => Failure::tls(
                        format!("TLS handshake with {}: {e}", target.host),
                        crate::tlsrpt::handshake_result(&e),
                    ),
                });
            }
        };
        let conn = stream.get_ref().1;
        // `testing` accepted whatever certificate came: check it now, for the record only.
        if sts == Some(Mode::Testing)
            && policy != OutboundTls::Verify
            && let Some(m) = &shared.mta_sts
            && let Err(f) = m.check_certificate(conn, &target.host)
        {
            mta_sts::record_failure(&mut self.rec, &f);
        }
        self.rec.starttls_used = true;
        self.rec.dane_authenticated = matches!(dane, crate::dane::DanePlan::Authenticate(_));
        self.rec.cert_verified = policy == OutboundTls::Verify || self.rec.dane_authenticated;
        self.rec.tls_version = conn.protocol_version().map(crate::tls::version_name);
        self.rec.tls_cipher = conn.negotiated_cipher_suite().map(crate::tls::cipher_name);
        self.rec.tls_resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        self.io = Transport::Tls(Box::new(stream));
        Ok(())
    }
}
