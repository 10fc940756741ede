//! The masters of a Dataset as a client sees them: one, or the three (or five) of a Raft
//! quorum. Any of them answers; a call that fails in transport moves on to the next one, so
//! the retry that follows ([`crate::with_retry`]) asks another master. That is how clients and
//! workers keep going across a master's death and an election.

use crate::pb::master_client::MasterClient;
use crate::retry::is_final;
use crate::tls::Role;
use crate::{Address, MAX_MESSAGE};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tonic::transport::Channel;
use tonic::Status;

/// Most masters a list may name.
pub const MAX_MASTERS: usize = 7;

#[derive(Clone)]
pub struct MasterSet {
    clients: Arc<Vec<MasterClient<Channel>>>,
    addresses: Arc<Vec<Address>>,
    /// The master calls go to until it fails.
    current: Arc<AtomicUsize>,
}

impl MasterSet {
    pub fn new(addresses: &[Address]) -> Result<MasterSet, String> {
        if addresses.is_empty() || addresses.len() > MAX_MASTERS {
            return Err(format!("{} master addresses: give 1 to {MAX_MASTERS}", addresses.len()));
        }
        let clients = addresses
            .iter()
            .map(|a| Ok(MasterClient::new(a.channel(Role::Master)?).max_decoding_message_size(MAX_MESSAGE)))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(MasterSet { clients: Arc::new(clients), addresses: Arc::new(addresses.to_vec()), current: Arc::default() })
    }

    /// Every master (a worker reports to each).
    pub fn all(&self) -> impl Iterator<Item = (&Address, MasterClient<Channel>)> {
        self.addresses.iter().zip(self.clients.iter().cloned())
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Calls the current master; a transport failure makes the next one current.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, Status>
    where
        F: FnOnce(MasterClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let i = self.current.load(Ordering::Relaxed) % self.clients.len();
        let result = f(self.clients[i].clone()).await;
        if let Err(s) = &result {
            if !is_final(s) && self.clients.len() > 1 {
                // Only the caller that saw `i` fail moves on: concurrent failures skip one master, not all.
                let _ = self.current.compare_exchange(i, (i + 1) % self.clients.len(), Ordering::Relaxed, Ordering::Relaxed);
            }
        }
        result
    }
}

/// `a,b,c` as a list of addresses (one address is a list of one).
pub fn parse_list(text: &str) -> Result<Vec<Address>, String> {
    let list: Vec<Address> = text.split(',').filter(|a| !a.trim().is_empty()).map(Address::parse).collect::<Result<_, _>>()?;
    if list.is_empty() || list.len() > MAX_MASTERS {
        return Err(format!("{text}: give 1 to {MAX_MASTERS} addresses, separated by commas"));
    }
    Ok(list)
}

/// The list as `parse_list` reads it back.
pub fn join(list: &[Address]) -> String {
    list.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_and_are_bounded() {
        let l = parse_list("unix:/r/master-0.sock,127.0.0.1:7000, 127.0.0.1:7001").unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(parse_list(&join(&l)).unwrap(), l);
        assert!(parse_list("").is_err());
        assert!(parse_list(&vec!["127.0.0.1:1"; 8].join(",")).is_err());
        assert!(parse_list("127.0.0.1:1,nonsense").unwrap_err().contains("nonsense"));
    }
}
