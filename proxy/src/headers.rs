//! Header hygiene between client and upstream: hop-by-hop headers removed, forwarding
//! headers set from the connection (a client's own are trusted only from trusted
//! proxies), request ids propagated or made.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use weir_crds::snapshot::{NEVER_UPGRADED, upgrade_protocol};

/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Longest request id taken from a client.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Hop-by-hop headers (RFC 9110 §7.6.1), which describe one connection and must not
/// be forwarded.
const HOP_BY_HOP: [&HeaderName; 8] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::PROXY_AUTHENTICATE,
    &header::PROXY_AUTHORIZATION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
];

/// The comma-separated tokens of every `name` header (`Connection`,
/// `Access-Control-Request-Headers`, ...): trimmed, lower case, empty ones left out.
pub fn list_tokens(headers: &HeaderMap, name: HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty())
        .collect()
}

/// Removes hop-by-hop headers and those the `Connection` header names. For a protocol
/// upgrade (`upgrade` is true) `Connection: upgrade` and `Upgrade` are kept.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none: one pass over the names is cheaper than the removals.
    let present = headers
        .keys()
        .any(|name| HOP_BY_HOP.contains(&name) || name == header::UPGRADE);
    if !present && !upgrade {
        return;
    }
    let named: Vec<HeaderName> = list_tokens(headers, header::CONNECTION)
        .into_iter()
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .filter(|name| !(upgrade && name == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    // `TE: trailers` is the one TE value that must travel on (gRPC needs it).
    let trailers_only = headers
        .get_all(header::TE)
        .iter()
        .all(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"))
        && headers.contains_key(header::TE);
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if trailers_only {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Removes the headers a client's `Connection` header names (other than `Upgrade`) as the
/// request arrives, and leaves in `Connection` only its options (`close`, `keep-alive`,
/// `upgrade`): plugins see the request as the upstream will, and a header a plugin sets
/// later cannot be named away by the client (`Connection: x-user`).
pub fn remove_connection_named(headers: &mut HeaderMap) {
    if !headers.contains_key(header::CONNECTION) {
        return;
    }
    let tokens = list_tokens(headers, header::CONNECTION);
    let (options, named): (Vec<&str>, Vec<&str>) = tokens
        .iter()
        .map(String::as_str)
        .partition(|token| matches!(*token, "close" | "keep-alive" | "upgrade"));
    if named.is_empty() {
        return;
    }
    for name in named {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            headers.remove(name);
        }
    }
    match HeaderValue::from_str(&options.join(", ")) {
        Ok(value) if !options.is_empty() => {
            headers.insert(header::CONNECTION, value);
        }
        _ => {
            headers.remove(header::CONNECTION);
        }
    }
}

/// A new random request id (128 bits, hex). Ids need to be unique, not secret: a fast
/// generator per thread, seeded from the system, is enough.
fn next_request_id() -> String {
    use rand::{RngExt as _, SeedableRng as _};
    thread_local! {
        static GENERATOR: std::cell::RefCell<rand::rngs::SmallRng> =
            std::cell::RefCell::new(rand::rngs::SmallRng::from_rng(&mut rand::rng()));
    }
    let bytes: [u8; 16] = GENERATOR.with_borrow_mut(|generator| generator.random());
    hex::encode(bytes)
}

/// Whether a request may switch its connection to the protocols it asks for with
/// `Upgrade` (and `Connection: upgrade`): each one it names (lower case, without its
/// version) is in `allowed`, and none is `h2c`, which is never tunnelled whatever a rule
/// says. False when it asks for no upgrade.
pub fn upgrade_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    if !headers.contains_key(header::UPGRADE)
        || !list_tokens(headers, header::CONNECTION)
            .iter()
            .any(|token| token == "upgrade")
    {
        return false;
    }
    let protocols = list_tokens(headers, header::UPGRADE);
    !protocols.is_empty()
        && protocols.iter().all(|token| {
            let name = upgrade_protocol(token);
            name != NEVER_UPGRADED && allowed.contains(&name)
        })
}

/// Whether `ip` is one of the trusted proxies.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// Whether the client used HTTPS: it connected over TLS, or it came through a trusted
/// proxy whose `X-Forwarded-Proto` (its first element, the hop nearest the client) says
/// `https`.
pub fn client_used_https(headers: &HeaderMap, peer: &Peer, trusted: &[IpNet]) -> bool {
    peer.proto == "https"
        || (is_trusted(peer.ip, trusted)
            && list_tokens(headers, X_FORWARDED_PROTO.clone())
                .first()
                .map(String::as_str)
                == Some("https"))
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most
/// address of `X-Forwarded-For` that is not itself a trusted proxy (IPv4 addresses in
/// their IPv6 form as IPv4 addresses).
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let chain: Vec<IpAddr> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
        // `::ffff:192.0.2.1` is the IPv4 client it names, as for peers (see `Peer::new`).
        .map(|ip| ip.to_canonical())
        .collect();
    chain
        .into_iter()
        .rev()
        .find(|ip| !is_trusted(*ip, trusted))
        .unwrap_or(peer)
}

/// How a client connection appears in forwarding headers, worked out once per connection.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The peer's address.
    pub ip: IpAddr,
    /// The address as an `X-Forwarded-For` element.
    pub for_value: HeaderValue,
    /// The address as a `Forwarded` node (`192.0.2.1`, `"[2001:db8::1]"`).
    pub node: Box<str>,
    /// `http` or `https`, as the client connected.
    pub proto: &'static str,
}

impl Peer {
    /// The forwarding identity of a peer that connected with or without TLS. An IPv4
    /// client of a dual-stack listener (`::ffff:192.0.2.1`) is its IPv4 address, in
    /// headers, logs, trusted-proxy checks and plugins alike.
    pub fn new(peer: SocketAddr, tls: bool) -> Self {
        let ip = peer.ip().to_canonical();
        let text = ip.to_string();
        let node = match ip {
            IpAddr::V4(_) => text.clone(),
            IpAddr::V6(_) => format!("\"[{text}]\""),
        };
        Self {
            ip,
            for_value: HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("unknown")),
            node: node.into(),
            proto: if tls { "https" } else { "http" },
        }
    }
}

/// Headers in which clients name their own address, port or prefix: believed only from
/// trusted proxies.
static CLIENT_CLAIMS: [HeaderName; 8] = [
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("forwarded"),
];

/// Removes what a client that is not a trusted proxy claims about its own address, port
/// or prefix, before plugins or the upstream see the request (the forwarding headers are
/// then set by [`set_forwarded`]).
pub fn remove_client_claims(headers: &mut HeaderMap) {
    for name in &CLIENT_CLAIMS {
        headers.remove(name);
    }
}

/// Sets `X-Forwarded-For/-Proto/-Host` and `Forwarded` for a request to `host`. From a
/// trusted proxy the existing values are kept and extended; from anyone else they are
/// replaced.
pub fn set_forwarded(headers: &mut HeaderMap, peer: &Peer, host: &str, trusted: &[IpNet]) {
    let host = if host.contains('"') {
        host.replace('"', "")
    } else {
        host.to_owned()
    };
    let mut element = String::with_capacity(32 + peer.node.len() + host.len());
    element.push_str("for=");
    element.push_str(&peer.node);
    element.push_str(";host=\"");
    element.push_str(&host);
    element.push_str("\";proto=");
    element.push_str(peer.proto);
    if is_trusted(peer.ip, trusted) {
        append_list(
            headers,
            &X_FORWARDED_FOR,
            peer.for_value.to_str().unwrap_or_default(),
        );
        append_list(headers, &FORWARDED, &element);
        insert_if_absent(headers, &X_FORWARDED_PROTO, peer.proto);
        insert_if_absent(headers, &X_FORWARDED_HOST, &host);
    } else {
        headers.insert(X_FORWARDED_FOR.clone(), peer.for_value.clone());
        set(headers, &FORWARDED, &element);
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(peer.proto),
        );
        set(headers, &X_FORWARDED_HOST, &host);
    }
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(value) => {
            headers.insert(name.clone(), value);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

fn insert_if_absent(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    if !headers.contains_key(name) {
        set(headers, name, value);
    }
}

/// Appends `value` to a comma-separated list header, joining repeated fields into one.
fn append_list(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    let existing: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let joined = if existing.is_empty() {
        value.to_owned()
    } else {
        format!("{}, {value}", existing.join(", "))
    };
    set(headers, name, &joined);
}

/// The request id to use: the client's `X-Request-Id` when it is short printable ASCII,
/// else a new random one. The header is set to it.
pub fn ensure_request_id(headers: &mut HeaderMap) -> String {
    if let Some(id) = headers.get(&X_REQUEST_ID).and_then(|v| v.to_str().ok())
        && !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id.bytes().all(|b| b.is_ascii_graphic())
    {
        return id.to_owned();
    }
    // 128 random bits from the thread-local generator: no system call per request.
    let id = next_request_id();
    headers.insert(
        X_REQUEST_ID.clone(),
        HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("-")),
    );
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn https_is_tls_or_what_a_trusted_proxy_says() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let says_https = headers(&[("x-forwarded-proto", "HTTPS, http")]);
        let says_http = headers(&[("x-forwarded-proto", "http")]);
        let proxy = |tls| Peer::new("10.0.0.1:1000".parse().unwrap(), tls);
        let stranger = Peer::new("192.0.2.1:1000".parse().unwrap(), false);
        assert!(client_used_https(&HeaderMap::new(), &proxy(true), &trusted));
        assert!(client_used_https(&says_https, &proxy(false), &trusted));
        assert!(!client_used_https(&says_http, &proxy(false), &trusted));
        assert!(!client_used_https(&says_https, &stranger, &trusted));
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_by_connection_go() {
        let mut map = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "gzip"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("x-kept", "yes"),
        ]);
        remove_hop_by_hop(&mut map, false);
        let names: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn te_trailers_survives_for_grpc() {
        let mut map = headers(&[("te", "trailers")]);
        remove_hop_by_hop(&mut map, false);
        assert_eq!(map["te"], "trailers");
    }

    #[test]
    fn upgrades_keep_their_upgrade_headers() {
        let mut map = headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("keep-alive", "1"),
        ]);
        remove_hop_by_hop(&mut map, true);
        assert_eq!(map["connection"], "upgrade");
        assert_eq!(map["upgrade"], "websocket");
        assert!(!map.contains_key("keep-alive"));
    }

    #[test]
    fn only_allowed_upgrades_are_upgrades() {
        let websocket = ["websocket".to_owned()];
        let asks = |connection: &str, upgrade: &str| {
            headers(&[("connection", connection), ("upgrade", upgrade)])
        };
        assert!(upgrade_allowed(&asks("Upgrade", "WebSocket"), &websocket));
        assert!(upgrade_allowed(
            &asks("keep-alive, upgrade", "websocket/13"),
            &websocket
        ));
        assert!(!upgrade_allowed(
            &headers(&[("upgrade", "websocket")]),
            &websocket
        ));
        assert!(!upgrade_allowed(&asks("upgrade", "h2c"), &websocket));
        assert!(!upgrade_allowed(
            &asks("upgrade", "websocket, h2c"),
            &websocket
        ));
        assert!(!upgrade_allowed(
            &asks("upgrade", "h2c"),
            &["h2c".to_owned()]
        ));
        assert!(!upgrade_allowed(
            &asks("upgrade", "connect-udp"),
            &websocket
        ));
        assert!(!upgrade_allowed(&asks("upgrade", "websocket"), &[]));
    }

    fn origin(peer: &str) -> Peer {
        Peer::new(peer.parse().unwrap(), true)
    }

    #[test]
    fn ipv4_clients_of_a_dual_stack_listener_are_ipv4() {
        let peer = origin("[::ffff:192.0.2.1]:4000");
        assert_eq!(peer.ip, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(peer.for_value, "192.0.2.1");
        assert_eq!(&*peer.node, "192.0.2.1");
        let trusted: Vec<IpNet> = vec!["192.0.2.0/24".parse().unwrap()];
        let headers = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(
            client_ip(&headers, peer.ip, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap(),
            "an IPv4 trusted proxy is trusted when it connects over IPv6"
        );
        let mapped = self::headers(&[("x-forwarded-for", "::ffff:198.51.100.7")]);
        assert_eq!(
            client_ip(&mapped, peer.ip, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap(),
            "so is an IPv4 client a proxy names in IPv6 form"
        );
        let v6 = origin("[2001:db8::1]:4000");
        assert_eq!(&*v6.node, "\"[2001:db8::1]\"");
    }

    #[test]
    fn untrusted_peers_cannot_forge_forwarding_headers() {
        let mut map = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "for=1.2.3.4"),
        ]);
        set_forwarded(
            &mut map,
            &origin("203.0.113.9:5000"),
            "api.example.com",
            &[],
        );
        assert_eq!(map["x-forwarded-for"], "203.0.113.9");
        assert_eq!(map["x-forwarded-proto"], "https");
        assert_eq!(map["x-forwarded-host"], "api.example.com");
        assert_eq!(
            map["forwarded"],
            "for=203.0.113.9;host=\"api.example.com\";proto=https"
        );
        assert_eq!(
            client_ip(&map, "203.0.113.9".parse().unwrap(), &[]),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn trusted_proxies_are_extended_and_the_client_is_the_first_untrusted_hop() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut map = headers(&[
            ("x-forwarded-for", "198.51.100.7, 10.1.1.1"),
            ("x-forwarded-proto", "http"),
            ("forwarded", "for=198.51.100.7"),
        ]);
        set_forwarded(
            &mut map,
            &origin("10.0.0.2:5000"),
            "api.example.com",
            &trusted,
        );
        assert_eq!(map["x-forwarded-for"], "198.51.100.7, 10.1.1.1, 10.0.0.2");
        assert_eq!(map["x-forwarded-proto"], "http");
        assert_eq!(map["x-forwarded-host"], "api.example.com");
        assert_eq!(
            map["forwarded"],
            "for=198.51.100.7, for=10.0.0.2;host=\"api.example.com\";proto=https"
        );
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            client_ip(&map, peer, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn ipv6_peers_are_quoted_in_forwarded() {
        let mut map = HeaderMap::new();
        set_forwarded(
            &mut map,
            &origin("[2001:db8::1]:443"),
            "api.example.com",
            &[],
        );
        assert_eq!(
            map["forwarded"],
            "for=\"[2001:db8::1]\";host=\"api.example.com\";proto=https"
        );
    }

    #[test]
    fn request_ids_are_kept_when_sane_and_made_otherwise() {
        let mut map = headers(&[("x-request-id", "abc-123")]);
        assert_eq!(ensure_request_id(&mut map), "abc-123");
        let mut map = headers(&[("x-request-id", "has space")]);
        let made = ensure_request_id(&mut map);
        assert_eq!(made.len(), 32);
        assert_eq!(map["x-request-id"], made.as_str());
        let mut map = HeaderMap::new();
        let a = ensure_request_id(&mut map);
        let b = ensure_request_id(&mut HeaderMap::new());
        assert_ne!(a, b);
    }
}
