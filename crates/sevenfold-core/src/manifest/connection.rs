//! `AllowedConnections` entries: a host name, wildcard or IP address, with an
//! optional port.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::error::{ProblemKind, Quoted};

/// Longest host name, in characters (RFC 1123 / RFC 1035).
const MAX_HOST_LEN: usize = 253;
/// Longest label of a host name.
const MAX_LABEL_LEN: usize = 63;

/// One entry of `AllowedConnections`: where an application may connect.
///
/// Written `host`, `host:port`, `*.example.com`, `192.0.2.1:8883`, `::1` or
/// `[::1]:8883`. Host names are stored in lower case (DNS is
/// case-insensitive), so `Example.COM` and `example.com` are the same target.
/// Without a port, any port of that host is allowed.
///
/// Only [`ConnectionTarget::parse`] makes one, so every value is valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectionTarget {
    host: Host,
    port: Option<u16>,
}

/// The host part of a [`ConnectionTarget`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Host {
    /// A DNS host name in lower case, such as `telemetry.example.com`.
    Name(String),
    /// `*.suffix`: any name with one or more labels in front of `suffix`
    /// (held here without the `*.`, in lower case). The suffix has at least
    /// two labels, so `*.com` is refused.
    Wildcard(String),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address.
    Ipv6(Ipv6Addr),
}

impl ConnectionTarget {
    /// Parses and validates one `AllowedConnections` entry.
    ///
    /// Host names follow RFC 1123: dot-separated labels of 1 to 63 letters,
    /// digits and `-` (not first or last), 253 characters in all. Two further
    /// rules close doors: `*` may only be the whole leftmost label, and the
    /// last label must start with a letter (as every top-level domain does), so
    /// that legacy numeric forms such as `127.1` or `0x7f000001`, which some
    /// resolvers read as addresses, are never taken for names.
    ///
    /// # Errors
    /// [`ProblemKind::BadHost`] or [`ProblemKind::BadPort`], with the reason.
    pub fn parse(s: &str) -> Result<Self, ProblemKind> {
        if let Some(rest) = s.strip_prefix('[') {
            let Some((addr, after)) = rest.split_once(']') else {
                return Err(bad_host("'[' without a closing ']'".into()));
            };
            let ip = addr.parse::<Ipv6Addr>().map_err(|_| {
                bad_host(format!(
                    "'{}' in brackets is not an IPv6 address",
                    Quoted(addr)
                ))
            })?;
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(port) => Some(parse_port(port)?),
                    None => return Err(bad_host("only ':port' may follow ']'".into())),
                },
            };
            return Ok(Self {
                host: Host::Ipv6(ip),
                port,
            });
        }
        if s.matches(':').nth(1).is_some() {
            let ip = s.parse::<Ipv6Addr>().map_err(|_| {
                bad_host(
                    "not an IPv6 address (and an IPv6 address with a port is written \
                     in brackets, like '[::1]:8883')"
                        .into(),
                )
            })?;
            return Ok(Self {
                host: Host::Ipv6(ip),
                port: None,
            });
        }
        let (host, port) = match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        };
        let host = parse_host(host)?;
        let port = port.map(parse_port).transpose()?;
        Ok(Self { host, port })
    }

    /// The host (name, wildcard or address).
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The only port allowed, or `None` for any port.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

impl FromStr for ConnectionTarget {
    type Err = ProblemKind;

    fn from_str(s: &str) -> Result<Self, ProblemKind> {
        Self::parse(s)
    }
}

/// The canonical form, which [`ConnectionTarget::parse`] reads back to an equal value.
impl fmt::Display for ConnectionTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.port) {
            (Host::Ipv6(ip), Some(port)) => write!(f, "[{ip}]:{port}"),
            (host, Some(port)) => write!(f, "{host}:{port}"),
            (host, None) => write!(f, "{host}"),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Wildcard(suffix) => write!(f, "*.{suffix}"),
            Self::Ipv4(ip) => write!(f, "{ip}"),
            Self::Ipv6(ip) => write!(f, "{ip}"),
        }
    }
}

fn bad_host(reason: String) -> ProblemKind {
    ProblemKind::BadHost { reason }
}

fn parse_host(s: &str) -> Result<Host, ProblemKind> {
    if s.is_empty() {
        return Err(bad_host("the host is empty".into()));
    }
    if let Ok(ip) = s.parse::<Ipv4Addr>() {
        return Ok(Host::Ipv4(ip));
    }
    if !s.is_ascii() {
        return Err(bad_host(
            "non-ASCII characters; write an internationalized name in its 'xn--' (punycode) form"
                .into(),
        ));
    }
    let len = s.len();
    if len > MAX_HOST_LEN {
        return Err(bad_host(format!(
            "the name is {len} characters long; at most {MAX_HOST_LEN} are allowed"
        )));
    }
    let lower = s.to_ascii_lowercase();
    let (wildcard, name) = match lower.strip_prefix("*.") {
        Some(suffix) => (true, suffix),
        None => (false, lower.as_str()),
    };
    let mut labels = 0;
    let mut last = "";
    for label in name.split('.') {
        check_label(label)?;
        labels += 1;
        last = label;
    }
    if !last.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(bad_host(format!(
            "the last label '{last}' must start with a letter; an IPv4 address is written \
             as four numbers 0-255, like '192.0.2.1'"
        )));
    }
    match (wildcard, labels) {
        (true, 0 | 1) => Err(bad_host(format!(
            "a wildcard must cover a domain of at least two labels, like '*.example.com', \
             not '*.{name}'"
        ))),
        (true, _) => Ok(Host::Wildcard(name.to_owned())),
        (false, _) => Ok(Host::Name(lower)),
    }
}

fn check_label(label: &str) -> Result<(), ProblemKind> {
    if label.is_empty() {
        return Err(bad_host(
            "an empty label (a '.' at the start or end, or two in a row)".into(),
        ));
    }
    if label.contains('*') {
        return Err(bad_host(
            "'*' is allowed only as the whole leftmost label, like '*.example.com'".into(),
        ));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(bad_host(format!(
            "'{}' is not allowed; host names hold letters, digits, '-' and '.'",
            c.escape_debug()
        )));
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(bad_host(format!(
            "a label is {} characters long; at most {MAX_LABEL_LEN} are allowed",
            label.len()
        )));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(bad_host(format!(
            "the label '{label}' starts or ends with '-'"
        )));
    }
    Ok(())
}

fn parse_port(s: &str) -> Result<u16, ProblemKind> {
    let bad = |reason: String| ProblemKind::BadPort { reason };
    if s.is_empty() {
        return Err(bad("nothing after ':'".into()));
    }
    // Digits only (`u16::from_str` would take "+1"); five at most, so the
    // value fits a u32 and a huge number is reported, not wrapped.
    if s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!(
            "'{}' is not a number from 1 to 65535",
            Quoted(s)
        )));
    }
    let n: u32 = s
        .parse()
        .map_err(|_| bad(format!("'{s}' is not a number from 1 to 65535")))?;
    match u16::try_from(n) {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(bad(format!("{n} is out of range (1..=65535)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Valid entries and their canonical form.
    #[test]
    fn valid_targets_and_canonical_form() {
        let cases = [
            ("telemetry.example.com", "telemetry.example.com"),
            ("Telemetry.Example.COM:443", "telemetry.example.com:443"),
            ("localhost", "localhost"),
            ("*.example.com", "*.example.com"),
            ("*.Example.com:8883", "*.example.com:8883"),
            ("127.0.0.1:8883", "127.0.0.1:8883"),
            ("192.0.2.1", "192.0.2.1"),
            ("::1", "::1"),
            ("[::1]", "::1"),
            ("[::1]:8883", "[::1]:8883"),
            ("[2001:DB8::1]:1", "[2001:db8::1]:1"),
            ("x--y.example:65535", "x--y.example:65535"),
            ("a1.b2.c3", "a1.b2.c3"),
        ];
        for (input, canonical) in cases {
            let target = ConnectionTarget::parse(input)
                .unwrap_or_else(|e| panic!("{input} was refused: {e}"));
            assert_eq!(target.to_string(), canonical, "{input}");
            assert_eq!(
                ConnectionTarget::parse(canonical).unwrap(),
                target,
                "{input}"
            );
        }
    }

    #[test]
    fn parts_are_exposed() {
        let target = ConnectionTarget::parse("*.Example.com:8883").unwrap();
        assert_eq!(target.host(), &Host::Wildcard("example.com".into()));
        assert_eq!(target.port(), Some(8883));
        let target: ConnectionTarget = "10.0.0.1".parse().unwrap();
        assert_eq!(target.host(), &Host::Ipv4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(target.port(), None);
    }

    /// Refused entries, each with the kind of problem and a word of the reason.
    #[test]
    fn invalid_targets() {
        let cases = [
            ("", "host", "empty"),
            ("exa mple.com", "host", "' '"),
            ("-bad.com", "host", "'-'"),
            ("bad-.com", "host", "'-'"),
            ("a..b", "host", "empty label"),
            (".example.com", "host", "empty label"),
            ("example.com.", "host", "empty label"),
            ("under_score.com", "host", "'_'"),
            ("exämple.com", "host", "non-ASCII"),
            ("*", "host", "'*'"),
            ("*.*.com", "host", "'*'"),
            ("a*.example.com", "host", "'*'"),
            ("www.*.example.com", "host", "'*'"),
            ("*.com", "host", "at least two labels"),
            ("127.1", "host", "last label"),
            ("0x7f000001", "host", "last label"),
            ("256.1.1.1", "host", "last label"),
            ("01.2.3.4", "host", "last label"),
            ("[::1", "host", "closing"),
            ("[::1]8883", "host", "':port'"),
            ("[127.0.0.1]:80", "host", "IPv6"),
            ("::1:8883x", "host", "IPv6"),
            ("fe80::1%eth0", "host", "IPv6"),
            ("host:0", "port", "out of range"),
            ("host:70000", "port", "out of range"),
            ("host:", "port", "nothing"),
            ("host:+80", "port", "not a number"),
            ("host:123456", "port", "not a number"),
            ("host:http", "port", "not a number"),
            ("[::1]:0", "port", "out of range"),
        ];
        for (input, part, words) in cases {
            let err = ConnectionTarget::parse(input).expect_err(input);
            let reason = match (&err, part) {
                (ProblemKind::BadHost { reason }, "host")
                | (ProblemKind::BadPort { reason }, "port") => reason,
                _ => panic!("{input}: expected a bad {part}, got {err:?}"),
            };
            assert!(
                reason.contains(words),
                "{input}: {reason:?} does not say {words:?}"
            );
        }
    }

    #[test]
    fn length_limits() {
        let label63 = "a".repeat(63);
        assert!(ConnectionTarget::parse(&format!("{label63}.com")).is_ok());
        let err = ConnectionTarget::parse(&format!("{}.com", "a".repeat(64))).unwrap_err();
        assert!(
            matches!(&err, ProblemKind::BadHost { reason } if reason.contains("64 characters")),
            "{err:?}"
        );
        // 4 labels of 63 + 3 dots = 255 > 253; 3 labels of 63 + "b.c" + dots = 253.
        let long = [label63.as_str(); 4].join(".");
        let err = ConnectionTarget::parse(&long).unwrap_err();
        assert!(
            matches!(&err, ProblemKind::BadHost { reason } if reason.contains("255 characters")),
            "{err:?}"
        );
        let limit = format!(
            "{label63}.{label63}.{label63}.abcdefghijklmnopqrstuvwxyz.{}",
            "b".repeat(34)
        );
        assert_eq!(limit.len(), 253);
        assert!(ConnectionTarget::parse(&limit).is_ok());
    }
}
