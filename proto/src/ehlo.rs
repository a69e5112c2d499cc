//! EHLO capabilities (RFC 5321 §4.1.1.1): what a server offers, read from its 250 reply.

use crate::reply::Reply;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The server's name: the first word of the first line.
    pub server_name: String,
    /// Upper-cased keywords with their parameters, in the order offered.
    pub keywords: Vec<(String, Vec<String>)>,
}

impl Capabilities {
    pub fn from_reply(reply: &Reply) -> Self {
        let mut lines = reply.lines.iter();
        let server_name = lines.next().and_then(|l| l.split_ascii_whitespace().next()).unwrap_or("").to_string();
        let keywords = lines
            .filter_map(|l| {
                let mut words = l.split_ascii_whitespace();
                let kw = words.next()?.to_ascii_uppercase();
                Some((kw, words.map(str::to_string).collect()))
            })
            .collect();
        Self { server_name, keywords }
    }

    pub fn has(&self, keyword: &str) -> bool {
        self.keywords.iter().any(|(k, _)| k.eq_ignore_ascii_case(keyword))
    }

    pub fn starttls(&self) -> bool {
        self.has("STARTTLS")
    }

    pub fn pipelining(&self) -> bool {
        self.has("PIPELINING")
    }

    /// The SIZE limit, if offered with a number (0 means no fixed limit).
    pub fn size(&self) -> Option<u64> {
        self.keywords.iter().find(|(k, _)| k == "SIZE").and_then(|(_, p)| p.first()).and_then(|s| s.parse().ok())
    }

    /// The keywords as a reply to EHLO, with `greeting` as the first line.
    pub fn to_reply(&self, greeting: &str) -> Reply {
        let mut lines = vec![greeting.to_string()];
        for (k, params) in &self.keywords {
            let mut l = k.clone();
            for p in params {
                l.push(' ');
                l.push_str(p);
            }
            lines.push(l);
        }
        Reply::multi(250, lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keywords() {
        let r = Reply::multi(
            250,
            vec!["mx.a.example Hello".into(), "SIZE 10240000".into(), "starttls".into(), "PIPELINING".into()],
        );
        let c = Capabilities::from_reply(&r);
        assert_eq!(c.server_name, "mx.a.example");
        assert!(c.starttls() && c.pipelining() && !c.has("CHUNKING"));
        assert_eq!(c.size(), Some(10_240_000));
    }
}
