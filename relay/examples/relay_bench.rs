//! The relay alone, for throughput runs and profiles without building the whole `smtplab` binary
//! (which pulls polars: 30+ minutes cold on a loaded 2-core machine). Same library entry point
//! (`Relay::start`) and the same flags, for the subset `benches/compare/relay-vs-postfix.sh`
//! passes: --listen --hostname --spool --mailbox-dir --local-domain --tls-cert --tls-key
//! --relay-domain --inbound-tls --outbound-tls --route DOMAIN=ADDR:PORT --bind. Runs until SIGINT.
//! Beyond them (not in `smtplab relay`): --connection-reuse off|on-demand|always and
//! --destination-concurrency N, the `[systems.delivery]` knobs of the same names, and --records
//! FILE (session records, to count the sessions a run made).
//!
//!   cargo build --release -p smtplab-relay --example relay_bench
//!   SMTPLAB=$CARGO_TARGET_DIR/release/examples/relay_bench benches/compare/relay-vs-postfix.sh

use std::net::ToSocketAddrs;
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("relay") {
        return Err("usage: relay_bench relay --listen ADDR --hostname NAME --spool DIR [flags]".into());
    }
    let (mut listen, mut hostname, mut spool, mut mailbox_dir) = (None, None, None, None);
    let (mut cert, mut key, mut bind) = (None, None, None);
    let (mut inbound, mut outbound) = (relay::InboundTls::default(), relay::OutboundTls::default());
    let (mut local_domains, mut relay_domains) = (Vec::new(), Vec::new());
    let mut resolver = relay::StaticResolver::new();
    let mut delivery = relay::DeliveryOptions::default();
    let mut records = None;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = Some(value.parse()?),
            "--hostname" => hostname = Some(value),
            "--spool" => spool = Some(value.into()),
            "--mailbox-dir" => mailbox_dir = Some(value.into()),
            "--local-domain" => local_domains.push(value),
            "--relay-domain" => relay_domains.push(value),
            "--tls-cert" => cert = Some(std::fs::read_to_string(value)?),
            "--tls-key" => key = Some(std::fs::read_to_string(value)?),
            "--inbound-tls" => inbound = value.parse()?,
            "--outbound-tls" => outbound = value.parse()?,
            "--bind" => bind = Some(value.parse()?),
            "--records" => records = Some(std::path::PathBuf::from(value)),
            "--connection-reuse" => delivery.connection_reuse = value.parse()?,
            "--destination-concurrency" => delivery.destination_concurrency_limit = value.parse()?,
            "--route" => {
                let (domain, target) = value.split_once('=').ok_or("--route DOMAIN=ADDR:PORT")?;
                let addr = target.to_socket_addrs()?.next().ok_or("route target has no address")?;
                let host = target.rsplit_once(':').map(|(h, _)| h).unwrap_or(target).to_string();
                resolver.add(domain, relay::MxTarget { host, addr, system: None });
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let hostname: String = hostname.ok_or("--hostname missing")?;
    let tls_identity = match (cert, key) {
        (Some(cert_chain_pem), Some(key_pem)) => Some(relay::TlsIdentity { cert_chain_pem, key_pem }),
        _ => None,
    };
    let cfg = relay::RelayConfig {
        system: hostname.clone(),
        hostname,
        listen: listen.ok_or("--listen missing")?,
        submission: None,
        bind,
        spool: spool.ok_or("--spool missing")?,
        local_domains,
        relay_domains,
        relay_clients: Vec::new(),
        mailbox_dir: mailbox_dir.unwrap_or_else(|| "mailboxes".into()),
        tls_identity,
        tls: relay::TlsSettings::default(),
        inbound_tls: inbound,
        outbound_tls: outbound,
        outbound_tls_by_domain: Vec::new(),
        mta_sts: None,
        ca_pem: None,
        resolver: Arc::new(resolver),
        records,
        keylog: None,
        limits: Default::default(),
        timeouts: Default::default(),
        delivery,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let handle = relay::Relay::start(cfg).await?;
        eprintln!("relay_bench listening on {}", handle.listen);
        tokio::signal::ctrl_c().await?;
        // Group commit at work: how many messages' commits each directory fsync covered.
        let (syncs, commits) = handle.spool_sync_counts();
        eprintln!("relay_bench spool: {syncs} directory fsyncs for {commits} commits (store, update, remove)");
        handle.shutdown(std::time::Duration::from_secs(10)).await;
        Ok(())
    })
}
