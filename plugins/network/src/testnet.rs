//! `LocalTestnet`: n validators on 127.0.0.1 with ephemeral ports, real TLS sockets, and a faucet, for tests
//! and demos.

use crate::envelope::VerifierPolicy;
use crate::error::{NetworkError, Result};
use crate::identity::NodeIdentity;
use crate::node::Node;
use crate::protocol::{MICRO, NetworkParams, ValidatorInfo, hex_id};
use crate::service::{NodeService, ServiceOptions};
use crate::tls::{TlsConfig, TlsTransport};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How a testnet is set up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestnetOptions {
    /// Voting stake of each validator, rUv.
    pub validator_stake: f64,
    /// rUv a validator's faucet gives each client that connects to it.
    pub faucet: f64,
    /// Stake lock period.
    pub lock_period: Duration,
    /// Anti-entropy period of the validators.
    pub tick: Duration,
}

impl Default for TestnetOptions {
    fn default() -> Self {
        Self { validator_stake: 100.0, faucet: 1000.0, lock_period: Duration::ZERO, tick: Duration::from_millis(100) }
    }
}

#[derive(Debug)]
struct Running {
    service: NodeService,
    transport: Arc<TlsTransport>,
}

/// Validators running on this machine.
#[derive(Debug)]
pub struct LocalTestnet {
    identities: Vec<Arc<NodeIdentity>>,
    addrs: Vec<SocketAddr>,
    params: Arc<NetworkParams>,
    options: TestnetOptions,
    running: Vec<Option<Running>>,
}

impl LocalTestnet {
    /// Starts `n` validators with default options.
    pub async fn start(n: usize) -> Result<Self> {
        Self::start_with(n, TestnetOptions::default()).await
    }

    /// Starts `n` validators.
    pub async fn start_with(n: usize, options: TestnetOptions) -> Result<Self> {
        if n == 0 {
            return Err(NetworkError::Refused("a testnet needs at least one validator".into()));
        }
        let identities: Vec<Arc<NodeIdentity>> = (0..n).map(|_| Arc::new(NodeIdentity::generate())).collect();
        let stake = crate::protocol::to_micro(options.validator_stake)?;
        let mut params = NetworkParams::new(
            identities.iter().map(|id| ValidatorInfo { identity: id.public().clone(), stake }).collect(),
        );
        let faucet = crate::protocol::to_micro(options.faucet)?;
        params.faucet = Some(faucet);
        // Every validator runs a faucet for the clients that connect to it: enough for a million clients each.
        params.genesis =
            identities.iter().map(|id| (id.peer_id(), faucet.saturating_mul(1_000_000).max(MICRO))).collect();
        params.lock_period_ms = options.lock_period.as_millis() as u64;
        let params = Arc::new(params);
        let mut net = Self { identities, addrs: Vec::new(), params, options, running: Vec::new() };
        for i in 0..n {
            let running = net.launch(i, "127.0.0.1:0".parse().expect("literal")).await?;
            net.addrs.push(running.transport.local_addr());
            net.running.push(Some(running));
        }
        for i in 0..n {
            net.dial_peers(i);
        }
        Ok(net)
    }

    async fn launch(&self, i: usize, addr: SocketAddr) -> Result<Running> {
        let identity = self.identities[i].clone();
        let transport = Arc::new(
            TlsTransport::bind(identity.clone(), addr, TlsConfig::default())
                .await
                .map_err(|e| NetworkError::Disconnected(e.to_string()))?,
        );
        let node = Node::new(identity, self.params.clone(), VerifierPolicy::default());
        let service = NodeService::spawn(
            node,
            transport.clone(),
            ServiceOptions { tick: self.options.tick, faucet: self.params.faucet },
        );
        Ok(Running { service, transport })
    }

    /// Validator i dials the validators after it (each pair has one connection; the dialer redials).
    fn dial_peers(&self, i: usize) {
        let Some(running) = &self.running[i] else { return };
        for j in i + 1..self.identities.len() {
            running.transport.add_peer(self.addrs[j], Some(self.identities[j].peer_id()));
        }
    }

    /// Validators, running or stopped.
    pub fn len(&self) -> usize {
        self.identities.len()
    }

    /// Whether it has no validators (never: `start` needs one).
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// Validator `i`'s endpoint, `ruvector://<node id>@127.0.0.1:<port>`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("ruvector://{}@{}", hex_id(&self.identities[i].peer_id().0), self.addrs[i])
    }

    /// The network parameters.
    pub fn params(&self) -> &Arc<NetworkParams> {
        &self.params
    }

    /// Validator `i`'s service, if it runs.
    pub fn validator(&self, i: usize) -> Option<&NodeService> {
        self.running[i].as_ref().map(|r| &r.service)
    }

    /// Validator `i`'s transport, if it runs.
    pub fn transport(&self, i: usize) -> Option<&Arc<TlsTransport>> {
        self.running[i].as_ref().map(|r| &r.transport)
    }

    /// Stops validator `i` (its connections close; its state is gone).
    pub fn stop(&mut self, i: usize) {
        self.running[i] = None;
    }

    /// Restarts validator `i` on its old address with an empty state: it catches up from its peers.
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        if self.running[i].is_some() {
            return Ok(());
        }
        let mut attempts = 0;
        let running = loop {
            match self.launch(i, self.addrs[i]).await {
                Ok(r) => break r,
                // The old socket may linger for a moment.
                Err(_) if attempts < 50 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        };
        self.running[i] = Some(running);
        self.dial_peers(i);
        Ok(())
    }
}
