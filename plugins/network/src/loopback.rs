//! The in-process transport: every endpoint of a [`LoopbackHub`] reaches every other through unbounded FIFO
//! channels, in send order, with no I/O. For tests, demos and single-process simulations.

use ruvector_dag::network::{BoxFuture, Envelope, NetworkTransport, PeerId};
use ruvector_dag::{Error, Result};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

type Inbox = mpsc::UnboundedSender<(PeerId, Envelope)>;

fn disconnected(message: String) -> Error {
    Error::Plugin { plugin: "loopback".into(), message: format!("RV005 QUDAG_DISCONNECTED: {message}") }
}

/// Connects loopback endpoints.
#[derive(Debug, Clone, Default)]
pub struct LoopbackHub {
    inboxes: Arc<Mutex<BTreeMap<PeerId, Inbox>>>,
}

impl LoopbackHub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new endpoint for `peer`; it replaces an earlier endpoint of the same peer.
    pub fn endpoint(&self, peer: PeerId) -> LoopbackTransport {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inboxes.lock().expect("hub lock").insert(peer, tx);
        LoopbackTransport { hub: self.clone(), me: peer, inbox: tokio::sync::Mutex::new(rx) }
    }

    /// Removes `peer`: envelopes to it fail from now on (a stopped node).
    pub fn disconnect(&self, peer: &PeerId) {
        self.inboxes.lock().expect("hub lock").remove(peer);
    }
}

/// One node's endpoint on a [`LoopbackHub`].
#[derive(Debug)]
pub struct LoopbackTransport {
    hub: LoopbackHub,
    me: PeerId,
    inbox: tokio::sync::Mutex<mpsc::UnboundedReceiver<(PeerId, Envelope)>>,
}

impl NetworkTransport for LoopbackTransport {
    fn name(&self) -> &str {
        "loopback"
    }

    fn local_peer(&self) -> PeerId {
        self.me
    }

    fn peers(&self) -> Vec<PeerId> {
        self.hub.inboxes.lock().expect("hub lock").keys().filter(|p| **p != self.me).copied().collect()
    }

    fn send(&self, to: PeerId, envelope: Envelope) -> BoxFuture<'_, Result<()>> {
        let target = self.hub.inboxes.lock().expect("hub lock").get(&to).cloned();
        let me = self.me;
        Box::pin(async move {
            let target = target.ok_or_else(|| disconnected(format!("no peer {to}")))?;
            target.send((me, envelope)).map_err(|_| disconnected(format!("peer {to} left")))
        })
    }

    fn recv(&self) -> BoxFuture<'_, Result<(PeerId, Envelope)>> {
        Box::pin(async move {
            self.inbox.lock().await.recv().await.ok_or_else(|| disconnected("loopback hub closed".into()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(n: u8) -> Envelope {
        Envelope {
            version: 1,
            kind: 1,
            sender: PeerId([n; 32]),
            sequence: u64::from(n),
            timestamp_ms: 0,
            payload: vec![n],
            signature: vec![],
        }
    }

    #[tokio::test]
    async fn delivers_in_order_and_broadcasts() {
        let hub = LoopbackHub::new();
        let a = hub.endpoint(PeerId([1; 32]));
        let b = hub.endpoint(PeerId([2; 32]));
        let c = hub.endpoint(PeerId([3; 32]));
        assert_eq!(a.peers(), vec![PeerId([2; 32]), PeerId([3; 32])]);
        a.send(b.local_peer(), env(1)).await.unwrap();
        a.send(b.local_peer(), env(2)).await.unwrap();
        assert_eq!(b.recv().await.unwrap(), (PeerId([1; 32]), env(1)));
        assert_eq!(b.recv().await.unwrap().1, env(2));
        assert_eq!(c.broadcast(env(3)).await.unwrap(), 2);
        assert_eq!(a.recv().await.unwrap().1, env(3));
        assert_eq!(b.recv().await.unwrap().1, env(3));
        hub.disconnect(&b.local_peer());
        let err = a.send(PeerId([2; 32]), env(4)).await.unwrap_err();
        assert!(err.to_string().contains("RV005"), "{err}");
    }
}
