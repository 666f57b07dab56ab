//! Connections counted per source address, for caps per address beside the global ones.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// An address as rate limits and caps count it: IPv4 as is, IPv6 by its /64, which one
/// subscriber usually holds whole (counting /128s would give them 2^64 addresses).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Open connections per address, for a cap per address beside the global one: one address
/// (or /64) cannot hold every place.
#[derive(Default)]
pub struct PerAddress(Arc<Mutex<std::collections::HashMap<IpAddr, usize>>>);

/// One connection counted for its address until dropped.
pub struct AddressSlot {
    map: Arc<Mutex<std::collections::HashMap<IpAddr, usize>>>,
    key: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl PerAddress {
    /// A slot for one more connection from `ip`, or `None` when it has `cap` already.
    pub fn take(&self, ip: IpAddr, cap: usize) -> Option<AddressSlot> {
        let key = address_key(ip);
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(key).or_default();
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(AddressSlot { map: self.0.clone(), key })
    }
}
