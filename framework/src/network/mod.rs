//! Sharing learned patterns with peer servers: the [`NetworkTransport`] plugin trait and the envelope it
//! carries.
//!
//! The framework defines only what crosses the boundary: signed, versioned [`Envelope`]s between
//! [`PeerId`]s. Transports (an in-process loopback for tests, TLS 1.3 with post-quantum key exchange for
//! production) are plugins; they run their own async runtime inside and expose futures through [`BoxFuture`],
//! so this crate depends on no runtime.

use crate::error::Result;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future: what transport methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A node's identity: the 32-byte hash of its signing public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize)]
pub struct PeerId(pub [u8; 32]);

impl fmt::Display for PeerId {
    /// Lower-case hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for PeerId {
    /// The first 8 hex digits, like a short commit id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId(")?;
        self.0[..4].iter().try_for_each(|b| write!(f, "{b:02x}"))?;
        write!(f, "…)")
    }
}

/// A signed message between peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Protocol version of `payload`.
    pub version: u16,
    /// Message type (proposal, endorsement, sync request, …), defined by the network plugin.
    pub kind: u16,
    /// The signer.
    pub sender: PeerId,
    /// The sender's sequence number: each sender numbers its envelopes 1, 2, 3, …, so a receiver can reject
    /// replays.
    pub sequence: u64,
    /// When the sender signed it, in milliseconds since the Unix epoch; receivers reject envelopes outside their
    /// clock window.
    pub timestamp_ms: u64,
    /// The message, encoded by the network plugin.
    pub payload: Vec<u8>,
    /// The sender's signature over every field above, with a context string per `kind`.
    pub signature: Vec<u8>,
}

/// Moves envelopes between this node and its peers.
///
/// `send` delivers to one peer, `recv` waits for the next envelope from any peer, `peers` lists who is
/// reachable now. `broadcast` defaults to sending to each peer in turn and returns how many accepted; a
/// transport with a cheaper fan-out overrides it. Transports authenticate peers (a received envelope's peer is
/// who the transport says it is) but do not judge signatures on payloads: that is the protocol's job.
pub trait NetworkTransport: Send + Sync {
    /// The transport's registered name, e.g. `loopback` or `tls`.
    fn name(&self) -> &str;

    /// This node's identity.
    fn local_peer(&self) -> PeerId;

    /// Peers reachable now.
    fn peers(&self) -> Vec<PeerId>;

    /// Sends one envelope to one peer.
    fn send(&self, to: PeerId, envelope: Envelope) -> BoxFuture<'_, Result<()>>;

    /// Waits for the next envelope from any peer.
    fn recv(&self) -> BoxFuture<'_, Result<(PeerId, Envelope)>>;

    /// Sends one envelope to every peer; returns how many accepted it.
    fn broadcast(&self, envelope: Envelope) -> BoxFuture<'_, Result<usize>> {
        Box::pin(async move {
            let mut sent = 0;
            for peer in self.peers() {
                self.send(peer, envelope.clone()).await?;
                sent += 1;
            }
            Ok(sent)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::task::{Context, Poll, Waker};

    /// Records sends; knows two peers.
    struct Recorder(Mutex<Vec<PeerId>>);

    impl NetworkTransport for Recorder {
        fn name(&self) -> &str {
            "recorder"
        }
        fn local_peer(&self) -> PeerId {
            PeerId([0; 32])
        }
        fn peers(&self) -> Vec<PeerId> {
            vec![PeerId([1; 32]), PeerId([2; 32])]
        }
        fn send(&self, to: PeerId, _: Envelope) -> BoxFuture<'_, Result<()>> {
            self.0.lock().unwrap().push(to);
            Box::pin(std::future::ready(Ok(())))
        }
        fn recv(&self) -> BoxFuture<'_, Result<(PeerId, Envelope)>> {
            Box::pin(std::future::pending())
        }
    }

    #[test]
    fn default_broadcast_sends_to_every_peer() {
        let t = Recorder(Mutex::new(Vec::new()));
        let env = Envelope {
            version: 1,
            kind: 0,
            sender: t.local_peer(),
            sequence: 1,
            timestamp_ms: 0,
            payload: vec![],
            signature: vec![],
        };
        let mut fut = t.broadcast(env);
        // Every send is ready, so one poll completes the broadcast.
        let poll = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(matches!(poll, Poll::Ready(Ok(2))));
        drop(fut);
        assert_eq!(*t.0.lock().unwrap(), vec![PeerId([1; 32]), PeerId([2; 32])]);
    }

    #[test]
    fn peer_id_formats() {
        let id = PeerId([0xab; 32]);
        assert_eq!(id.to_string().len(), 64);
        assert_eq!(format!("{id:?}"), "PeerId(abababab…)");
    }
}
