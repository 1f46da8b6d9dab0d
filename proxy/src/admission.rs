//! Admission of client connections: at most `max_connections` open at once across all
//! shards, and at most `max_connections_per_client` from one client address (0: no
//! per-client limit). A connection beyond either limit is closed as soon as it is
//! accepted, before anything is read from it, and counted in
//! `weir_connections_refused_total{reason}`. The client address is the TCP peer: behind
//! a load balancer that does not keep client addresses, every connection comes from the
//! balancer, so leave the per-client limit off there.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::Limits;

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The proxy has `max_connections` open.
    Total,
    /// The client has `max_connections_per_client` open.
    PerClient,
}

impl Refusal {
    /// The `reason` label of `weir_connections_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::PerClient => "per_client",
        }
    }
}

/// The open connections of the whole proxy, counted against its limits.
#[derive(Debug)]
pub struct Admission {
    open: AtomicUsize,
    max_open: usize,
    max_per_client: usize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// An admitted connection; dropping it (when the connection ends) frees its place.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    client: Option<IpAddr>,
}

impl Admission {
    /// Counts connections against `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            open: AtomicUsize::new(0),
            max_open: limits.max_connections,
            max_per_client: limits.max_connections_per_client,
            per_client: Mutex::default(),
        }
    }

    /// Admits a connection from `client`, or says which limit it is beyond.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Admitted, Refusal> {
        let open = self.open.fetch_add(1, Ordering::AcqRel);
        let mut admitted = Admitted {
            admission: self.clone(),
            client: None,
        };
        if open >= self.max_open {
            return Err(Refusal::Total);
        }
        if self.max_per_client > 0 {
            let mut per_client = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
            let count = per_client.entry(client).or_insert(0);
            if *count >= self.max_per_client {
                return Err(Refusal::PerClient);
            }
            *count += 1;
            admitted.client = Some(client);
        }
        Ok(admitted)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let admission = &self.admission;
        admission.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(client) = self.client {
            let mut per_client = admission
                .per_client
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(count) = per_client.get_mut(&client) {
                *count -= 1;
                if *count == 0 {
                    per_client.remove(&client);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_connections: usize, max_connections_per_client: usize) -> Arc<Admission> {
        Arc::new(Admission::new(&Limits {
            max_connections,
            max_connections_per_client,
            ..Limits::default()
        }))
    }

    #[test]
    fn the_total_limit_counts_every_client_and_frees_places() {
        let admission = admission(2, 0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(b).unwrap();
        assert_eq!(admission.admit(a).unwrap_err(), Refusal::Total);
        drop(first);
        assert!(admission.admit(b).is_ok());
    }

    #[test]
    fn the_per_client_limit_counts_one_address() {
        let admission = admission(100, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).unwrap_err(), Refusal::PerClient);
        assert!(admission.admit(b).is_ok(), "other clients are not affected");
        drop(first);
        let _again = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).unwrap_err(), Refusal::PerClient);
        // Refusals hold no place: only the two admitted connections of `a` are open.
        assert_eq!(admission.open.load(Ordering::Relaxed), 2);
        assert_eq!(admission.per_client.lock().unwrap().get(&a), Some(&2));
    }
}
