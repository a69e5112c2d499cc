//! The sending relay's MTA-STS lookup (`relay::mta_sts::MtaSts`) against the scenario's own DNS
//! server (UDP) and policy servers (hyper over rustls), all real, on loopback. Each domain
//! publishes something different; the expected outcome of each is RFC 8461's, worked out by hand:
//! a policy file that is not a policy, a response that is not `text/plain`, a body over 64 KiB, a
//! certificate that does not validate for `mta-sts.<domain>`, or a server that is not there all
//! mean "no policy", with the RFC 8460 result type recorded; a policy once fetched is used from
//! the cache until it expires or the TXT id changes, and survives the TXT record vanishing and
//! the fetch failing (trust on first use).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use relay::TlsIdentity;
use relay::mta_sts::{Mode, MtaSts, MtaStsConfig, Source};
use scenarios::dns::{DnsServer, MxEntry};
use scenarios::mta_sts::{DnsData, DnsRecord, PolicyServer};
use scenarios::pki::Pki;

const DNS: &str = "127.0.160.53:15861";
const HTTPS_PORT: u16 = 18861;

const VALID: &str = "version: STSv1\r\nmode: enforce\r\nmx: mx.good.example\r\nmax_age: 600\r\n";

/// What one domain publishes.
struct Site {
    domain: &'static str,
    /// None: no policy server listens (the fetch fails).
    body: Option<String>,
    content_type: &'static str,
    /// Which certificate the policy server presents.
    cert: Cert,
    txt: Vec<String>,
}

enum Cert {
    Right,
    OtherName,
    SelfSigned,
}

fn sites() -> Vec<Site> {
    let site = |domain, body: &str| Site {
        domain,
        body: Some(body.to_string()),
        content_type: "text/plain",
        cert: Cert::Right,
        txt: vec!["v=STSv1; id=1;".into()],
    };
    let oversize = format!("{VALID}{}", "comment: padding to exceed the limit\r\n".repeat(2000));
    assert!(oversize.len() > 64 << 10);
    vec![
        site("good.example", VALID),
        Site { content_type: "text/plain; charset=utf-8", ..site("charset.example", VALID) },
        site("badversion.example", "version: STSv2\nmode: enforce\nmx: mx.badversion.example\nmax_age: 600\n"),
        site("nomode.example", "version: STSv1\nmx: mx.nomode.example\nmax_age: 600\n"),
        site("badage.example", "version: STSv1\nmode: enforce\nmx: mx.badage.example\nmax_age: 1y\n"),
        site("oversize.example", &oversize),
        Site { content_type: "text/html", ..site("html.example", VALID) },
        Site { cert: Cert::OtherName, ..site("othername.example", VALID) },
        Site { cert: Cert::SelfSigned, ..site("selfsigned.example", VALID) },
        Site { body: None, ..site("noserver.example", VALID) },
        Site { txt: Vec::new(), ..site("notxt.example", VALID) },
        Site { txt: vec!["v=STSv1; id=1;".into(), "v=STSv1; id=2;".into()], ..site("twotxt.example", VALID) },
        Site { txt: vec!["v=STSv1; id=bad-id;".into()], ..site("badtxt.example", VALID) },
    ]
}

fn policy_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 160, 10 + i as u8)
}

/// The zones: every site's domain, its TXT records (with `good.example`'s id and address
/// replaced as given) and the A record of its policy host.
fn records(sites: &[Site], good_txt: Option<&str>, good_addr: Ipv4Addr) -> (Vec<MxEntry>, Vec<DnsRecord>) {
    let mut entries = Vec::new();
    let mut extra = Vec::new();
    for (i, s) in sites.iter().enumerate() {
        entries.push(MxEntry { domain: s.domain.into(), mx_host: format!("mx.{}", s.domain), addr: policy_addr(i) });
        let good = s.domain == "good.example";
        let txt: Vec<String> = if good { good_txt.map(str::to_string).into_iter().collect() } else { s.txt.clone() };
        for t in txt {
            extra.push(DnsRecord {
                zone: s.domain.into(),
                name: format!("_mta-sts.{}", s.domain),
                data: DnsData::Txt(t),
            });
        }
        let addr = if good { good_addr } else { policy_addr(i) };
        extra.push(DnsRecord { zone: s.domain.into(), name: format!("mta-sts.{}", s.domain), data: DnsData::A(addr) });
    }
    (entries, extra)
}

#[test]
fn fetch_outcomes_follow_rfc_8461() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let pki = Pki::new("fetch").expect("CA");
        let sites = sites();
        let mut servers = Vec::new();
        for (i, s) in sites.iter().enumerate() {
            let Some(body) = &s.body else { continue };
            let host = format!("mta-sts.{}", s.domain);
            let (cert_chain_pem, key_pem) = match s.cert {
                Cert::Right => pki.issue(&host),
                Cert::OtherName => pki.issue("mta-sts.somebody-else.example"),
                Cert::SelfSigned => Pki::self_signed(&host),
            }
            .expect("certificate");
            let addr = SocketAddr::new(IpAddr::V4(policy_addr(i)), HTTPS_PORT);
            let id = TlsIdentity { cert_chain_pem, key_pem };
            servers.push(PolicyServer::start(addr, &id, body.clone(), s.content_type).await.expect("policy server"));
        }
        let dns: SocketAddr = DNS.parse().expect("addr");
        let (entries, extra) = records(&sites, Some("v=STSv1; id=1;"), policy_addr(0));
        // TTL 1: the id change below is seen within a second.
        let server = DnsServer::start_secured(dns, &entries, &extra, &[], 1).await.expect("DNS server");
        let cfg = MtaStsConfig {
            dns,
            https_port: HTTPS_PORT,
            ca_pem: pki.ca_pem.clone(),
            fetch_timeout: Duration::from_secs(10),
        };
        let sts = MtaSts::new(&cfg, Some(IpAddr::V4(Ipv4Addr::new(127, 0, 160, 1))), &Default::default())
            .expect("MTA-STS client");

        // (domain, mode of the policy applied, RFC 8460 result type recorded)
        let expected: [(&str, Option<Mode>, Option<&str>); 13] = [
            ("good.example", Some(Mode::Enforce), None),
            ("charset.example", Some(Mode::Enforce), None),
            ("badversion.example", None, Some("sts-policy-invalid")),
            ("nomode.example", None, Some("sts-policy-invalid")),
            ("badage.example", None, Some("sts-policy-invalid")),
            ("oversize.example", None, Some("sts-policy-invalid")),
            ("html.example", None, Some("sts-policy-invalid")),
            ("othername.example", None, Some("sts-webpki-invalid")),
            ("selfsigned.example", None, Some("sts-webpki-invalid")),
            ("noserver.example", None, Some("sts-policy-fetch-error")),
            // No record, two records, or an invalid one: no policy announced, nothing to report.
            ("notxt.example", None, None),
            ("twotxt.example", None, None),
            ("badtxt.example", None, None),
        ];
        for (domain, mode, failure) in expected {
            let l = sts.lookup(domain).await;
            assert_eq!(l.mode(), mode, "{domain}: {l:?}");
            assert_eq!(l.failure.as_ref().map(|f| f.result_type()), failure, "{domain}: {l:?}");
        }
        let good = sts.lookup("good.example").await;
        let applied = good.applied.expect("cached");
        assert_eq!((applied.source, applied.id.as_str()), (Source::Cached, "1"));
        assert_eq!(applied.policy.mx, ["mx.good.example"]);
        assert_eq!(applied.policy.max_age, 600);
        // After max_age (600 s, simulated), the policy is fetched again.
        let later = sts.lookup_at("good.example", Instant::now() + Duration::from_secs(601)).await;
        assert_eq!(later.applied.map(|a| a.source), Some(Source::Fetched));

        // Trust on first use: the TXT record vanishes and the policy host moves to where nothing
        // answers. The cached policy still applies.
        server.stop().await;
        let (entries, extra) = records(&sites, None, Ipv4Addr::new(127, 0, 160, 250));
        let server = DnsServer::start_secured(dns, &entries, &extra, &[], 1).await.expect("DNS server");
        // Nothing in the lookup's result shows the TXT record is gone: wait out the resolver's
        // cache of the old answer (TTL 1 s) instead.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let tofu = sts.lookup("good.example").await;
        assert_eq!(tofu.applied.map(|a| (a.source, a.id)), Some((Source::Cached, "1".to_string())));
        assert_eq!(tofu.failure, None);

        // A new id whose policy cannot be fetched: the old policy holds, the failure is recorded.
        server.stop().await;
        let (entries, extra) = records(&sites, Some("v=STSv1; id=2;"), Ipv4Addr::new(127, 0, 160, 250));
        let server = DnsServer::start_secured(dns, &entries, &extra, &[], 1).await.expect("DNS server");
        let held = wait_for(&sts, |l| l.failure.is_some()).await;
        assert_eq!(held.failure.map(|f| f.result_type()), Some("sts-policy-fetch-error"));
        assert_eq!(held.applied.map(|a| (a.source, a.id)), Some((Source::Cached, "1".to_string())));

        // A new id whose policy can be fetched: fetched and cached under the new id.
        server.stop().await;
        let (entries, extra) = records(&sites, Some("v=STSv1; id=2;"), policy_addr(0));
        let server = DnsServer::start_secured(dns, &entries, &extra, &[], 1).await.expect("DNS server");
        let renewed = wait_for(&sts, |l| l.applied.as_ref().is_some_and(|a| a.id == "2")).await;
        assert_eq!(renewed.applied.map(|a| a.source), Some(Source::Fetched));
        assert_eq!(renewed.failure, None);
        let again = sts.lookup("good.example").await;
        assert_eq!(again.applied.map(|a| (a.source, a.id)), Some((Source::Cached, "2".to_string())));

        server.stop().await;
        for s in servers {
            s.stop().await;
        }
    });
}

/// Looks good.example up until `done` holds: the relay's resolver caches the old answer for
/// the TTL (1 s). Bounded: 100 tries, 100 ms apart.
async fn wait_for(sts: &MtaSts, done: impl Fn(&relay::mta_sts::Lookup) -> bool) -> relay::mta_sts::Lookup {
    for _ in 0..100 {
        let l = sts.lookup("good.example").await;
        if done(&l) {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the DNS change never reached the relay's resolver")
}
