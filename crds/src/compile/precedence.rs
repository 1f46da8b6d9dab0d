//! Which Route gets a request when several could: conflicts between Routes claiming the
//! same host and match (the older Route wins), and the order of match entries under each
//! host (most specific first).

use std::cmp::Reverse;
use std::collections::BTreeMap;

use super::report::{InSnapshot, ObjectReport};
use super::routes::LoweredRoute;
use crate::condition::{ConditionType, Reason};
use crate::snapshot::{Certificate, MatchEntry, PathPattern, VirtualHost};

/// What two entries must share to conflict: host, path, methods, headers and query.
type ConflictKey<'a> = (
    &'a str,
    &'a PathPattern,
    &'a [String],
    &'a [crate::snapshot::ValueCondition],
    &'a [crate::snapshot::ValueCondition],
);

/// A claim on a conflict key: the route (its position), the connections it takes (TLS,
/// plain, both), and the field of its match.
type Claim<'a> = (usize, Option<bool>, &'a str);

/// Places the entries of `routes` (oldest Route first) under their hosts, dropping the
/// entries that lose a conflict and telling their Routes so.
pub(crate) fn virtual_hosts(
    routes: &[LoweredRoute],
    reports: &mut [&mut ObjectReport],
) -> Vec<VirtualHost> {
    let mut claims: BTreeMap<ConflictKey<'_>, Vec<Claim<'_>>> = BTreeMap::new();
    let mut hosts: BTreeMap<&str, Vec<(SortKey, &MatchEntry)>> = BTreeMap::new();
    for (position, route) in routes.iter().enumerate() {
        let mut placed = 0usize;
        let mut lost = 0usize;
        for host in &route.hosts {
            for lowered in &route.entries {
                let entry = &lowered.entry;
                let key = (
                    host.as_str(),
                    &entry.path,
                    &entry.methods[..],
                    &entry.headers[..],
                    &entry.query[..],
                );
                let overlapping = claims.get(&key).and_then(|claimed| {
                    claimed.iter().find(|(_, tls, _)| {
                        tls.is_none() || entry.tls.is_none() || *tls == entry.tls
                    })
                });
                match overlapping {
                    // The same match twice in one object (one Route, or the Routes of
                    // one HTTPRoute attached to two Gateways).
                    Some(&(winner, _, _)) if routes[winner].origin == route.origin => continue,
                    Some(&(winner_position, _, winner_field)) => {
                        let winner = &routes[winner_position];
                        lost += 1;
                        // Across kinds (a Route, an Ingress, an HTTPRoute), the kept
                        // object is told too: its owners may not know the other kind.
                        if kind_of(&winner.origin) != kind_of(&route.origin) {
                            reports[winner_position].push(
                                winner_field,
                                ConditionType::Accepted,
                                Reason::KeptOverNewer,
                                format!(
                                    "host {host}: the newer {} claims the same match too; \
                                     it is not served there",
                                    route.origin
                                ),
                            );
                        }
                        reports[position].push(
                            lowered.field.clone(),
                            ConditionType::Accepted,
                            Reason::Conflicted,
                            format!(
                                "host {host}: the same match is claimed by {}, which takes precedence \
                                 (older, or as old and first by namespace/name)",
                                winner.origin
                            ),
                        );
                    }
                    None => {
                        claims
                            .entry(key)
                            .or_default()
                            .push((position, entry.tls, &lowered.field));
                        placed += 1;
                        hosts.entry(host).or_default().push((
                            sort_key(entry, position, lowered.rule, lowered.index),
                            entry,
                        ));
                    }
                }
            }
        }
        reports[position].in_snapshot = match (placed, lost) {
            (0, _) => InSnapshot::No,
            (_, 0) => InSnapshot::Whole,
            _ => InSnapshot::Partly,
        };
    }
    hosts
        .into_iter()
        .map(|(host, mut entries)| {
            entries.sort_by_key(|(key, _)| *key);
            VirtualHost {
                host: host.to_owned(),
                entries: entries.into_iter().map(|(_, e)| e.clone()).collect(),
            }
        })
        .collect()
}

/// The kind an origin names (`Route`, `Ingress`, `HTTPRoute`).
fn kind_of(origin: &str) -> &str {
    origin.split_once(' ').map_or(origin, |(kind, _)| kind)
}

/// Exact before Template before Regex before Prefix; longer values first; then, as the
/// Gateway API orders matches, a method condition first, then more header conditions,
/// then more query conditions; then the older Route, rule and match order.
type SortKey = (
    u8,
    Reverse<usize>,
    Reverse<bool>,
    Reverse<usize>,
    Reverse<usize>,
    usize,
    usize,
    usize,
);

fn sort_key(entry: &MatchEntry, route_position: usize, rule: usize, index: usize) -> SortKey {
    let (rank, value) = match &entry.path {
        PathPattern::Exact(v) => (0, v),
        PathPattern::Template(v) => (1, v),
        PathPattern::Regex(v) => (2, v),
        PathPattern::Prefix(v) => (3, v),
    };
    (
        rank,
        Reverse(value.len()),
        Reverse(!entry.methods.is_empty()),
        Reverse(entry.headers.len()),
        Reverse(entry.query.len()),
        route_position,
        rule,
        index,
    )
}

/// One certificate per Secret, serving the hosts of the Routes that name it; when two
/// Secrets claim a host, the older Route's wins and the other Route is told.
pub(crate) fn certificates(
    routes: &[LoweredRoute],
    reports: &mut [&mut ObjectReport],
) -> Vec<Certificate> {
    let mut host_owner: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    let mut by_secret: BTreeMap<&str, Certificate> = BTreeMap::new();
    for (position, route) in routes.iter().enumerate() {
        for certificate in &route.certificates {
            for host in &certificate.hosts {
                match host_owner.get(host.as_str()) {
                    Some((_, secret)) if *secret == certificate.secret => {}
                    Some((winner, secret)) => {
                        let winner = &routes[*winner];
                        reports[position].push(
                        "spec.tls.secretName",
                        ConditionType::Accepted,
                        Reason::Conflicted,
                        format!(
                            "host {host} already has TLS from Secret {secret} of {}, which takes \
                             precedence (older, or as old and first by namespace/name)",
                            winner.origin
                        ),
                    );
                        continue;
                    }
                    None => {
                        host_owner.insert(host, (position, &certificate.secret));
                    }
                }
                let entry = by_secret
                    .entry(&certificate.secret)
                    .or_insert_with(|| Certificate {
                        hosts: Vec::new(),
                        ..certificate.clone()
                    });
                if !entry.hosts.contains(host) {
                    entry.hosts.push(host.clone());
                }
                let route_name = format!("{}/{}", route.namespace, route.name);
                if !entry.routes.contains(&route_name) {
                    entry.routes.push(route_name);
                }
            }
        }
    }
    by_secret
        .into_values()
        .map(|mut c| {
            c.hosts.sort();
            c.routes.sort();
            c
        })
        .collect()
}
