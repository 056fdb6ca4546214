//! Which addresses a URL preview may connect to: a CIDR blacklist with a whitelist of
//! exceptions, applied to every address a host name resolves to (not to the name), so DNS
//! tricks cannot reach the loopback interface or the private network.

use std::net::IpAddr;

use trellis_core::{Error, Result};

/// An address range such as `10.0.0.0/8` or `fe80::/10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr> {
        let bad = || Error::internal(format!("not an address range: {s:?}"));
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().map_err(|_| bad())?, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim().parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => same_prefix(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => same_prefix(&net.octets(), &ip.octets(), self.prefix),
            _ => false,
        }
    }
}

fn same_prefix(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (bytes, bits) = (usize::from(prefix / 8), prefix % 8);
    if a[..bytes] != b[..bytes] {
        return false;
    }
    bits == 0 || (a[bytes] ^ b[bytes]) >> (8 - bits) == 0
}

/// The blacklist and its exceptions.
#[derive(Debug, Clone, Default)]
pub struct IpFilter {
    deny: Vec<Cidr>,
    allow: Vec<Cidr>,
}

impl IpFilter {
    pub fn new(deny: &[String], allow: &[String]) -> Result<IpFilter> {
        let parse = |list: &[String]| list.iter().map(|s| Cidr::parse(s)).collect::<Result<Vec<_>>>();
        Ok(IpFilter { deny: parse(deny)?, allow: parse(allow)? })
    }

    /// Whether a preview must not connect to `ip`. IPv4 addresses mapped into IPv6 are
    /// judged as the IPv4 address they are.
    pub fn blocks(&self, ip: IpAddr) -> bool {
        let ips = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => vec![ip, IpAddr::V4(v4)],
                None => vec![ip],
            },
            IpAddr::V4(_) => vec![ip],
        };
        let allowed = ips.iter().any(|&ip| self.allow.iter().any(|c| c.contains(ip)));
        !allowed && ips.iter().any(|&ip| self.deny.iter().any(|c| c.contains(ip)))
    }
}

#[cfg(test)]
mod tests {
    use trellis_core::config::MediaConfig;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges() {
        let c = Cidr::parse("172.16.0.0/12").unwrap();
        assert!(c.contains(ip("172.16.0.1")));
        assert!(c.contains(ip("172.31.255.255")));
        assert!(!c.contains(ip("172.32.0.0")));
        assert!(!c.contains(ip("::1")));
        assert!(Cidr::parse("fe80::/10").unwrap().contains(ip("febf::1")));
        assert!(!Cidr::parse("fe80::/10").unwrap().contains(ip("fec0::1")));
        assert!(Cidr::parse("1.2.3.4").unwrap().contains(ip("1.2.3.4")));
        assert!(!Cidr::parse("1.2.3.4").unwrap().contains(ip("1.2.3.5")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        for bad in ["1.2.3.4/33", "::/129", "x/8", "1.2.3/8", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_blacklist() {
        let d = MediaConfig::default();
        let f = IpFilter::new(&d.url_preview_ip_blacklist, &[]).unwrap();
        for blocked in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "192.168.1.1",
            "172.20.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "100.64.0.1",
        ] {
            assert!(f.blocks(ip(blocked)), "{blocked} must be blocked");
        }
        for open in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "172.32.0.1"] {
            assert!(!f.blocks(ip(open)), "{open} must be allowed");
        }
    }

    #[test]
    fn whitelist_wins() {
        let f = IpFilter::new(&["127.0.0.0/8".into()], &["127.0.0.2/32".into()]).unwrap();
        assert!(f.blocks(ip("127.0.0.1")));
        assert!(!f.blocks(ip("127.0.0.2")));
    }
}
