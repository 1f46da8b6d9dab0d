//! A rule's client address ranges, parsed once when the snapshot loads.

use std::net::IpAddr;

use ipnet::IpNet;
use weir_crds::snapshot::SourceRanges;

/// The addresses a rule serves: none of `deny`, and one of `allow` when it is not empty.
#[derive(Debug, Default)]
pub struct AddressRanges {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl AddressRanges {
    /// Parses a snapshot's ranges; fails on one that is not a CIDR, since leaving out a
    /// denied range would serve clients the Route refuses.
    pub fn load(ranges: &SourceRanges) -> Result<Self, String> {
        let parse = |list: &[String]| {
            list.iter()
                .map(|range| {
                    range
                        .parse::<IpNet>()
                        .map_err(|e| format!("source range {range:?}: {e}"))
                })
                .collect::<Result<Vec<_>, String>>()
        };
        Ok(Self {
            allow: parse(&ranges.allow)?,
            deny: parse(&ranges.deny)?,
        })
    }

    /// Whether `client` (canonical: see [`crate::headers::client_ip`]) may be served.
    pub fn admits(&self, client: IpAddr) -> bool {
        let within = |nets: &[IpNet]| nets.iter().any(|net| net.contains(&client));
        !within(&self.deny) && (self.allow.is_empty() || within(&self.allow))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(allow: &[&str], deny: &[&str]) -> AddressRanges {
        let owned = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
        AddressRanges::load(&SourceRanges {
            allow: owned(allow),
            deny: owned(deny),
        })
        .unwrap()
    }

    #[test]
    fn deny_wins_over_allow_and_an_empty_allow_admits_the_rest() {
        let only_deny = ranges(&[], &["10.0.0.0/8"]);
        assert!(!only_deny.admits("10.1.2.3".parse().unwrap()));
        assert!(only_deny.admits("192.0.2.1".parse().unwrap()));
        let both = ranges(&["10.0.0.0/8", "2001:db8::/32"], &["10.9.0.0/16"]);
        assert!(both.admits("10.1.2.3".parse().unwrap()));
        assert!(!both.admits("10.9.0.1".parse().unwrap()));
        assert!(!both.admits("192.0.2.1".parse().unwrap()));
        assert!(both.admits("2001:db8::7".parse().unwrap()));
        assert!(!both.admits("2001:db9::7".parse().unwrap()));
    }

    #[test]
    fn ranges_that_are_not_cidrs_do_not_load() {
        let bad = SourceRanges {
            allow: vec![],
            deny: vec!["10.0.0.0/33".into()],
        };
        assert!(AddressRanges::load(&bad).is_err());
    }
}
