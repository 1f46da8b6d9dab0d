//! Which Route gets a request when several could: conflicts between Routes claiming the
//! same host and match (the older Route wins), and the order of match entries under each
//! host (most specific first).

use std::cmp::Reverse;
use std::collections::BTreeMap;

use super::report::{InSnapshot, ObjectReport};
use super::routes::LoweredRoute;
use crate::condition::{ConditionType, Reason};
use crate::snapshot::{Certificate, MatchEntry, PathPattern, VirtualHost};

/// What two entries under one host must share to conflict: path, methods, headers and
/// query.
type ConflictKey<'a> = (
    &'a PathPattern,
    &'a [String],
    &'a [crate::snapshot::ValueCondition],
    &'a [crate::snapshot::ValueCondition],
);

/// An entry of a route: the route's position, and the entry's among the route's entries.
type EntryAt = (usize, usize);

/// An entry that lost a conflict: under which host, and to which entry.
struct Loss<'a> {
    host: &'a str,
    loser: EntryAt,
    winner: EntryAt,
}

/// Places the entries of `routes` (oldest Route first) under their hosts, dropping the
/// entries that lose a conflict and telling their Routes so. The entries placed are
/// moved out of `routes` (copied for a Route with several hosts), and a route's entries
/// go once all are placed: the snapshot's match entries are never held twice.
pub(crate) fn virtual_hosts(
    routes: &mut [LoweredRoute],
    reports: &mut [&mut ObjectReport],
) -> Vec<VirtualHost> {
    let placed = place(routes, reports);
    // How many placements each route has left: its entries go once all are placed.
    let mut left = vec![0usize; routes.len()];
    for (position, _) in placed.values().flatten() {
        left[*position] += 1;
    }
    placed
        .into_iter()
        .map(|(host, mut placed)| {
            placed.sort_by_key(|&(position, index)| {
                let lowered = &routes[position].entries[index];
                sort_key(&lowered.entry, position, lowered.rule, lowered.index)
            });
            let entries = placed
                .into_iter()
                .map(|(position, index)| {
                    let route = &mut routes[position];
                    let entry = &mut route.entries[index].entry;
                    let entry = if route.hosts.len() == 1 {
                        take_entry(entry)
                    } else {
                        entry.clone()
                    };
                    left[position] -= 1;
                    if left[position] == 0 {
                        route.entries = Vec::new();
                    }
                    entry
                })
                .collect();
            VirtualHost { host, entries }
        })
        .collect()
}

/// Decides which entries each host gets, and tells the Routes whose entries lose.
///
/// Entries conflict when they are under one host with the same conflict key and take the
/// same connections (TLS, plain, or either); the older Route's (the lower position) wins.
/// Each host's entries are sorted by conflict key, so conflicting entries are neighbours
/// and no map of every claim is needed (tens of thousands of entries at 10,000 Routes).
fn place(
    routes: &[LoweredRoute],
    reports: &mut [&mut ObjectReport],
) -> BTreeMap<String, Vec<EntryAt>> {
    let mut by_host: BTreeMap<&str, Vec<EntryAt>> = BTreeMap::new();
    for (position, route) in routes.iter().enumerate() {
        for host in &route.hosts {
            let entries = (0..route.entries.len()).map(|index| (position, index));
            by_host.entry(host).or_default().extend(entries);
        }
    }
    let conflict_key = |&(position, index): &EntryAt| -> ConflictKey<'_> {
        let entry = &routes[position].entries[index].entry;
        (
            &entry.path,
            &entry.methods[..],
            &entry.headers[..],
            &entry.query[..],
        )
    };
    let tls = |&(position, index): &EntryAt| routes[position].entries[index].entry.tls;
    let mut counts = vec![(0usize, 0usize); routes.len()];
    let mut losses = Vec::new();
    let mut hosts = BTreeMap::new();
    for (host, mut entries) in by_host {
        // A stable sort: within a key, oldest Route first, then the Route's own order.
        entries.sort_by_key(conflict_key);
        let mut kept = Vec::with_capacity(entries.len());
        for same_key in entries.chunk_by(|a, b| conflict_key(a) == conflict_key(b)) {
            let first_kept = kept.len();
            for &entry in same_key {
                let overlapping = kept[first_kept..].iter().find(|claimed| {
                    let (claimed, wanted) = (tls(claimed), tls(&entry));
                    claimed.is_none() || wanted.is_none() || claimed == wanted
                });
                match overlapping {
                    // The same match twice in one object (one Route, or the Routes of
                    // one HTTPRoute attached to two Gateways).
                    Some(&winner) if routes[winner.0].origin == routes[entry.0].origin => {}
                    Some(&winner) => {
                        counts[entry.0].1 += 1;
                        losses.push(Loss {
                            host,
                            loser: entry,
                            winner,
                        });
                    }
                    None => {
                        counts[entry.0].0 += 1;
                        kept.push(entry);
                    }
                }
            }
        }
        hosts.insert(host.to_owned(), kept);
    }
    // Told in the order of the Routes, their hosts and their entries.
    losses.sort_by_key(|loss| (loss.loser.0, loss.host, loss.loser.1));
    for Loss {
        host,
        loser,
        winner,
    } in losses
    {
        let (route, winning_route) = (&routes[loser.0], &routes[winner.0]);
        // Across kinds (a Route, an Ingress, an HTTPRoute), the kept object is told too:
        // its owners may not know the other kind.
        if kind_of(&winning_route.origin) != kind_of(&route.origin) {
            reports[winner.0].push(
                winning_route.entries[winner.1].field(),
                ConditionType::Accepted,
                Reason::KeptOverNewer,
                format!(
                    "host {host}: the newer {} claims the same match too; it is not served \
                     there",
                    route.origin
                ),
            );
        }
        reports[loser.0].push(
            route.entries[loser.1].field(),
            ConditionType::Accepted,
            Reason::Conflicted,
            format!(
                "host {host}: the same match is claimed by {}, which takes precedence (older, \
                 or as old and first by namespace/name)",
                winning_route.origin
            ),
        );
    }
    for (report, (placed, lost)) in reports.iter_mut().zip(counts) {
        report.in_snapshot = match (placed, lost) {
            (0, _) => InSnapshot::No,
            (_, 0) => InSnapshot::Whole,
            _ => InSnapshot::Partly,
        };
    }
    hosts
}

/// Moves an entry out, leaving an empty one (which allocates nothing) in its place.
fn take_entry(entry: &mut MatchEntry) -> MatchEntry {
    let empty = MatchEntry {
        rule: String::new(),
        path: PathPattern::Prefix(String::new()),
        methods: Vec::new(),
        headers: Vec::new(),
        query: Vec::new(),
        tls: None,
    };
    std::mem::replace(entry, empty)
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
