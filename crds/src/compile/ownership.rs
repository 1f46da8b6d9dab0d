//! Which namespace may serve a host. In a shared cluster every namespace owner is a
//! tenant who can write Routes, so a host belongs to the namespace of the oldest Route
//! that claims it (or that claims an older wildcard covering it), and Routes of other
//! namespaces serve it only when a Route of the owner, for that host, lists their
//! namespace in `allowedNamespaces` (Contour's delegation, in a Route). Every host
//! (`hosts: []`) and wildcards broader than one label below a registrable domain
//! (`*.com`, `*.co.uk`) are claims only trusted namespaces may make. A host a Route may
//! not serve is taken out of it (and out of its certificate), and the Route is told.

use std::collections::{BTreeMap, BTreeSet};

use super::report::ObjectReport;
use super::routes::LoweredRoute;
use crate::condition::{ConditionType, Reason};

/// The host every-host Routes are filed under.
const EVERY_HOST: &str = "*";

/// Takes out of `routes` (oldest first) the hosts they may not serve, telling each
/// Route's report why.
pub(crate) fn enforce(
    routes: &mut [LoweredRoute],
    reports: &mut [&mut ObjectReport],
    trusted: Option<&BTreeSet<String>>,
) {
    for (route, report) in routes.iter_mut().zip(reports.iter_mut()) {
        let namespace = route.tenant.clone();
        let is_trusted = trusted.is_none_or(|trusted| trusted.contains(&namespace));
        if is_trusted {
            continue;
        }
        route.hosts.retain(|host| {
            let broad = host == EVERY_HOST || is_broad_wildcard(host);
            if broad {
                report.push(
                    "spec.hosts",
                    ConditionType::Accepted,
                    Reason::HostNotPermitted,
                    format!(
                        "{}: only namespaces the operator trusts (--trusted-namespaces) may claim it; \
                         name the hosts this Route serves",
                        describe(host)
                    ),
                );
            }
            !broad
        });
    }

    let refusals: Vec<Vec<(String, String)>> = {
        let owners = Owners::of(routes);
        routes
            .iter()
            .map(|route| {
                route
                    .hosts
                    .iter()
                    .filter_map(|host| {
                        let owner = owners.owner(host)?;
                        let refused = owner.namespace != route.tenant
                            && !owner.admits(&route.tenant);
                        refused.then(|| {
                            let why = format!(
                                "{} belongs to namespace {} (its {} claimed {} first); a Route \
                                 there for this host can let namespace {} in with allowedNamespaces",
                                describe(host),
                                owner.namespace,
                                owner.origin,
                                owner.claim,
                                route.tenant
                            );
                            (host.clone(), why)
                        })
                    })
                    .collect()
            })
            .collect()
    };
    for ((route, report), refused) in routes.iter_mut().zip(reports.iter_mut()).zip(refusals) {
        if refused.is_empty() {
            continue;
        }
        route
            .hosts
            .retain(|host| !refused.iter().any(|(other, _)| other == host));
        for (_, why) in refused {
            report.push(
                "spec.hosts",
                ConditionType::Accepted,
                Reason::HostNotOwned,
                why,
            );
        }
    }
    // A certificate serves only the hosts its Route kept.
    for route in routes.iter_mut() {
        for certificate in &mut route.certificates {
            certificate.hosts.retain(|host| route.hosts.contains(host));
        }
    }
}

fn describe(host: &str) -> String {
    if host == EVERY_HOST {
        "every host (hosts: [])".to_owned()
    } else {
        format!("host {host}")
    }
}

/// Whether `host` is a wildcard broader than one label below a registrable domain:
/// `*.com` or `*.co.uk` (their base is a public suffix), not `*.example.com`.
fn is_broad_wildcard(host: &str) -> bool {
    let Some(base) = host.strip_prefix("*.") else {
        return false;
    };
    psl::domain(base.as_bytes()).is_none()
}

/// The owner of a claimed host.
struct Owner<'a> {
    namespace: &'a str,
    /// The object that claimed it first, as messages name it (`Route shop/api`).
    origin: &'a str,
    /// What that Route claimed: the host, or a wildcard covering it.
    claim: &'a str,
    /// Where (oldest first) that Route is.
    position: usize,
    /// Namespaces the owner's Routes for the claim let in.
    admitted: BTreeSet<&'a str>,
}

impl Owner<'_> {
    fn admits(&self, namespace: &str) -> bool {
        self.admitted.contains(namespace) || self.admitted.contains("*")
    }
}

/// The owner of every claimed host, exact or wildcard.
struct Owners<'a> {
    by_claim: BTreeMap<&'a str, Owner<'a>>,
}

impl<'a> Owners<'a> {
    fn of(routes: &'a [LoweredRoute]) -> Self {
        let mut by_claim: BTreeMap<&str, Owner<'_>> = BTreeMap::new();
        for (position, route) in routes.iter().enumerate() {
            for host in &route.hosts {
                by_claim.entry(host).or_insert_with(|| Owner {
                    namespace: &route.tenant,
                    origin: &route.origin,
                    claim: host,
                    position,
                    admitted: BTreeSet::new(),
                });
            }
        }
        for route in routes {
            for host in &route.hosts {
                if let Some(owner) = by_claim.get_mut(host.as_str())
                    && owner.namespace == route.tenant
                {
                    owner
                        .admitted
                        .extend(route.allowed_namespaces.iter().map(String::as_str));
                }
            }
        }
        Self { by_claim }
    }

    /// The owner of `host`: of its own claim, or of a wildcard covering it that was
    /// claimed earlier (a Route cannot take `a.example.com` from the namespace serving
    /// `*.example.com`, since the exact host would win the requests).
    fn owner(&self, host: &str) -> Option<&Owner<'a>> {
        let own = self.by_claim.get(host);
        let covering = covering_wildcards(host)
            .filter_map(|wildcard| self.by_claim.get(wildcard.as_str()))
            .min_by_key(|owner| owner.position);
        match (own, covering) {
            (Some(own), Some(covering)) if covering.position < own.position => Some(covering),
            (Some(own), _) => Some(own),
            (None, covering) => covering,
        }
    }
}

/// The wildcards that cover `host`: `*.b.c` and `*.c` for `a.b.c` (and `*.c` for the
/// wildcard `*.b.c`).
fn covering_wildcards(host: &str) -> impl Iterator<Item = String> + '_ {
    let base = host.strip_prefix("*.").unwrap_or(host);
    base.match_indices('.')
        .map(move |(dot, _)| format!("*{}", &base[dot..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broad_wildcards_are_those_whose_base_is_a_public_suffix() {
        assert!(is_broad_wildcard("*.com"));
        assert!(is_broad_wildcard("*.co.uk"));
        assert!(!is_broad_wildcard("*.example.com"));
        assert!(!is_broad_wildcard("*.a.example.co.uk"));
        assert!(!is_broad_wildcard("api.example.com"));
    }

    #[test]
    fn wildcards_covering_a_host_go_from_narrow_to_broad() {
        let covering: Vec<String> = covering_wildcards("a.b.example.com").collect();
        assert_eq!(covering, ["*.b.example.com", "*.example.com", "*.com"]);
        let covering: Vec<String> = covering_wildcards("*.b.example.com").collect();
        assert_eq!(covering, ["*.example.com", "*.com"]);
    }
}
