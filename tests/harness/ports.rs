//! Free TCP ports on 127.0.0.1.
//!
//! Tests run in parallel (nextest runs each test in its own process) and every server needs its
//! own ports. Asking the kernel for port 0 is the usual trick, but it hands out ports from the
//! *ephemeral* range, the same range every outgoing connection uses for its local port, and a
//! port released by the probe can be taken by such a connection before the server binds it.
//! So we pick random ports *below* the ephemeral range (where the kernel never assigns on its
//! own), check they can be bound, and never hand out the same port twice in one process.
//! Residual collisions between test processes are possible but very unlikely; servers that fail
//! to bind are restarted on new ports by their starters.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

/// Lowest port we consider (above common well-known and registered service ports).
const LOW: u16 = 15_000;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port on 127.0.0.1 that was free a moment ago and has not been returned before by this
/// process.
pub fn free_port() -> u16 {
    let high = ephemeral_low().saturating_sub(1);
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed = handed.get_or_insert_with(HashSet::new);
    if high > LOW + 1_000 {
        for _ in 0..200 {
            let port = LOW + (random_u64() % u64::from(high - LOW)) as u16;
            if !handed.contains(&port) && can_bind(port) {
                handed.insert(port);
                return port;
            }
        }
    }
    // Unusual ephemeral range configuration: fall back to the kernel's choice.
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        if handed.insert(port) {
            return port;
        }
    }
}

/// Two free ports `(p, p + offset)`, for servers that derive one port from another
/// regardless of flags (SeaweedFS's built-in worker dials the admin port + 10000).
pub fn free_port_pair(offset: u16) -> (u16, u16) {
    for _ in 0..200 {
        let port = free_port();
        let Some(second) = port.checked_add(offset) else {
            continue;
        };
        let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        let handed = handed.get_or_insert_with(HashSet::new);
        if !handed.contains(&second) && can_bind(second) {
            handed.insert(second);
            return (port, second);
        }
    }
    panic!("no free port pair with offset {offset}");
}

fn can_bind(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// First port of the kernel's ephemeral range (Linux default 32768).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Randomness without a dependency: std's hasher keys are random per process.
fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}
