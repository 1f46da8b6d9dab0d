//! Each shard's listening sockets. With `SO_REUSEPORT` every shard binds the same address
//! and the kernel spreads new connections over the shards' sockets, so no shard accepts
//! for another. Where the option is missing (or turned off), the first shard accepts on
//! the only socket and hands every other connection to the next shard in turn.

use std::net::{SocketAddr, TcpListener, TcpStream};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc;

/// Pending connections the kernel keeps per socket.
const BACKLOG: i32 = 1024;

/// Where a shard's connections of one listener come from.
pub enum Inbound {
    /// A socket of its own (`SO_REUSEPORT`).
    Own(TcpListener),
    /// The one socket, accepted by this shard for every shard: connections go round the
    /// shards, this one's own included.
    Accepting {
        /// The socket.
        listener: TcpListener,
        /// The other shards, in order after this one.
        others: Vec<mpsc::UnboundedSender<TcpStream>>,
    },
    /// Connections the accepting shard hands to this one.
    HandedOver(mpsc::UnboundedReceiver<TcpStream>),
}

/// How the shards share a listening address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// One socket per shard with `SO_REUSEPORT`.
    ReusePort,
    /// One socket, one accepting shard handing connections over.
    HandOver,
}

/// Binds `address` for `shards` shards: the address actually bound (port 0 picks one for
/// all) and each shard's inbound, in shard order. Falls back to [`Sharing::HandOver`]
/// when `SO_REUSEPORT` cannot be set.
pub fn bind(
    address: SocketAddr,
    shards: usize,
    sharing: Sharing,
) -> std::io::Result<(SocketAddr, Vec<Inbound>)> {
    let shards = shards.max(1);
    if sharing == Sharing::ReusePort && shards > 1 {
        match bind_one(address, true) {
            Ok(first) => {
                // Port 0 means "any": the other shards take the one the first was given.
                let bound = first.local_addr()?;
                let mut inbound = vec![Inbound::Own(first)];
                for _ in 1..shards {
                    inbound.push(Inbound::Own(bind_one(bound, true)?));
                }
                return Ok((bound, inbound));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                tracing::warn!(%address, "SO_REUSEPORT is not available: one shard accepts for all");
            }
            Err(e) => return Err(e),
        }
    }
    let listener = bind_one(address, false)?;
    let bound = listener.local_addr()?;
    let mut receivers = Vec::new();
    let mut others = Vec::new();
    for _ in 1..shards {
        let (sender, receiver) = mpsc::unbounded_channel();
        others.push(sender);
        receivers.push(Inbound::HandedOver(receiver));
    }
    let mut inbound = vec![Inbound::Accepting { listener, others }];
    inbound.extend(receivers);
    Ok((bound, inbound))
}

fn bind_one(address: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        set_reuse_port(&socket)?;
    }
    if address.is_ipv6() {
        socket.set_only_v6(false).ok();
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(all(
    unix,
    not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
))]
fn set_reuse_port(socket: &Socket) -> std::io::Result<()> {
    socket.set_reuse_port(true)
}

#[cfg(not(all(
    unix,
    not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
)))]
fn set_reuse_port(_socket: &Socket) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_share_one_port() {
        let (bound, inbound) = bind("127.0.0.1:0".parse().unwrap(), 3, Sharing::ReusePort).unwrap();
        assert_ne!(bound.port(), 0);
        assert_eq!(inbound.len(), 3);
        for shard in &inbound {
            let Inbound::Own(listener) = shard else {
                panic!("every shard has its own socket");
            };
            assert_eq!(listener.local_addr().unwrap(), bound);
        }
    }

    #[test]
    fn without_reuse_port_one_shard_accepts_for_the_others() {
        let (bound, inbound) = bind("127.0.0.1:0".parse().unwrap(), 3, Sharing::HandOver).unwrap();
        assert_ne!(bound.port(), 0);
        let [first, rest @ ..] = inbound.as_slice() else {
            panic!("three shards");
        };
        assert!(matches!(first, Inbound::Accepting { others, .. } if others.len() == 2));
        assert!(rest.iter().all(|i| matches!(i, Inbound::HandedOver(_))));
    }
}
