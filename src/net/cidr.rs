//! IP network prefixes (`10.0.0.0/8`, `fd00::/8`): parsed once, then asked
//! whether an address falls inside. The one CIDR matcher of the crate, used
//! by `NO_PROXY` rules and by the daemon's insecure-registry ranges. Pure;
//! owns no I/O and no policy about what a match means.

use std::net::IpAddr;

/// A network prefix: an address and how many leading bits of it count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// `addr/bits`; `None` when either half is malformed or `bits` is longer
    /// than the address.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (net, bits) = text.split_once('/')?;
        let net: IpAddr = net.parse().ok()?;
        let bits: u8 = bits.parse().ok()?;
        let width = if net.is_ipv4() { 32 } else { 128 };
        (bits <= width).then_some(Cidr { net, bits })
    }

    /// True when `ip` is in this network; an IPv4 address is never inside
    /// an IPv6 prefix, nor the other way round.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (a, b, width) = match (ip, self.net) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                (u128::from(u32::from(a)), u128::from(u32::from(b)), 32)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
            _ => return false,
        };
        let shift = width - u32::from(self.bits);
        // A /0 matches everything (and a shift by 128 would overflow).
        shift >= width || (a >> shift) == (b >> shift)
    }
}

#[cfg(test)]
mod tests {
    use super::Cidr;

    fn inside(ip: &str, cidr: &str) -> bool {
        Cidr::parse(cidr).unwrap().contains(ip.parse().unwrap())
    }

    #[test]
    fn membership() {
        assert!(inside("::1", "::1/128"));
        assert!(inside("1.2.3.4", "0.0.0.0/0"));
        assert!(inside("::1", "::/0"));
        assert!(inside("10.1.2.3", "10.0.0.0/8"));
        assert!(!inside("11.1.2.3", "10.0.0.0/8"));
        assert!(inside("192.168.1.77", "192.168.1.64/26"));
        assert!(!inside("192.168.1.128", "192.168.1.64/26"));
        assert!(inside("fd00::5", "fd00::/8"));
        assert!(!inside("10.0.0.1", "::/0"), "families never mix");
    }

    #[test]
    fn malformed_prefixes_are_refused() {
        for bad in [
            "1.2.3.0/33",
            "::/129",
            "1.2.3.0",
            "1.2.3/8",
            "x/8",
            "1.2.3.0/-1",
            "1.2.3.0/",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }
}
