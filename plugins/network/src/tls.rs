//! The network transport: TLS 1.3 over TCP (rustls on aws-lc-rs) with the hybrid post-quantum key exchange
//! X25519MLKEM768 only, and node authentication by ML-DSA-65 bound to the TLS session.
//!
//! TLS certificates here are throwaway self-signed ones: what authenticates a peer is its node identity. Right
//! after the handshake each side sends its public identity and an ML-DSA-65 signature over a TLS exporter value
//! (RFC 8446 §7.5, with the side's role as context), so the signature is valid for this session only and
//! cannot be relayed or reflected; the peer's id is the hash of the key that signed. The key exchange protects
//! traffic against harvest-now-decrypt-later; ML-DSA protects authentication against a future quantum forger.
//!
//! Frames are a 4-byte big-endian length and a postcard-encoded envelope; a frame over the limit closes the
//! connection. Each connection has a bounded outgoing queue (a send waits up to `send_timeout`, then the
//! envelope is dropped and counted: flooding and anti-entropy repair losses) and incoming envelopes wait for
//! room in the node's inbox, which pushes back on the peer through TCP. Configured peers are redialled with
//! exponential backoff.

use crate::identity::{NodeIdentity, PublicIdentity};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use ruvector_dag::network::{BoxFuture, Envelope, NetworkTransport, PeerId};
use ruvector_dag::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

const BINDING_LABEL: &[u8] = b"EXPORTER-ruvector-dag-node-auth";
const BINDING_CONTEXT: &[u8] = b"ruvector-dag/v1/tls-binding";
const SERVER_NAME: &str = "ruvector-node";

/// Limits and timings of the TLS transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsConfig {
    /// Largest frame accepted, bytes.
    pub max_frame: usize,
    /// Envelopes queued per connection.
    pub queue: usize,
    /// How long a send waits for room before dropping.
    pub send_timeout: Duration,
    /// Handshake and authentication deadline.
    pub handshake_timeout: Duration,
    /// First redial delay.
    pub backoff_min: Duration,
    /// Longest redial delay.
    pub backoff_max: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            max_frame: 4 << 20,
            queue: 1024,
            send_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// Counters of a TLS transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsStats {
    /// Connections authenticated.
    pub connections: u64,
    /// Handshakes or authentications that failed.
    pub auth_failures: u64,
    /// Frames over the size limit (their connection was closed).
    pub oversized: u64,
    /// Envelopes dropped because a peer's queue stayed full.
    pub dropped: u64,
    /// Redial attempts.
    pub redials: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    auth_failures: AtomicU64,
    oversized: AtomicU64,
    dropped: AtomicU64,
    redials: AtomicU64,
}

/// The wire form of an envelope.
#[derive(Serialize, Deserialize)]
struct WireEnvelope {
    version: u16,
    kind: u16,
    sender: PeerId,
    sequence: u64,
    timestamp_ms: u64,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl From<Envelope> for WireEnvelope {
    fn from(e: Envelope) -> Self {
        Self {
            version: e.version,
            kind: e.kind,
            sender: e.sender,
            sequence: e.sequence,
            timestamp_ms: e.timestamp_ms,
            payload: e.payload,
            signature: e.signature,
        }
    }
}

impl From<WireEnvelope> for Envelope {
    fn from(w: WireEnvelope) -> Self {
        Self {
            version: w.version,
            kind: w.kind,
            sender: w.sender,
            sequence: w.sequence,
            timestamp_ms: w.timestamp_ms,
            payload: w.payload,
            signature: w.signature,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Auth {
    identity: PublicIdentity,
    signature: Vec<u8>,
}

fn transport_error(message: impl Into<String>) -> Error {
    Error::Plugin { plugin: "tls".into(), message: message.into() }
}

/// The crypto provider: aws-lc-rs with X25519MLKEM768 as the only key exchange group.
pub fn post_quantum_provider() -> Arc<CryptoProvider> {
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![aws_lc_rs::kx_group::X25519MLKEM768];
    Arc::new(provider)
}

/// Accepts any server certificate but checks that the server's key signed the handshake: identity comes from
/// the ML-DSA binding afterwards.
#[derive(Debug)]
struct ChannelBound(Arc<CryptoProvider>);

impl ServerCertVerifier for ChannelBound {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

struct Inner {
    identity: Arc<NodeIdentity>,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    config: TlsConfig,
    conns: Mutex<HashMap<PeerId, (u64, mpsc::Sender<Envelope>)>>,
    groups: Mutex<BTreeMap<PeerId, String>>,
    inbox: mpsc::Sender<(PeerId, Envelope)>,
    counters: Counters,
    next_conn: AtomicU64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Inner {
    fn spawn(self: &Arc<Self>, fut: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(fut);
        let mut tasks = self.tasks.lock().expect("task list");
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }
}

/// A node's TLS endpoint: listens, dials configured peers, and moves envelopes.
pub struct TlsTransport {
    inner: Arc<Inner>,
    inbox: tokio::sync::Mutex<mpsc::Receiver<(PeerId, Envelope)>>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport").field("local_addr", &self.local_addr).field("peers", &self.peers()).finish()
    }
}

impl Drop for TlsTransport {
    fn drop(&mut self) {
        for task in self.inner.tasks.lock().expect("task list").drain(..) {
            task.abort();
        }
    }
}

impl TlsTransport {
    /// Listens on `listen` (port 0 picks one) as `identity`. Must run inside a tokio runtime.
    pub async fn bind(identity: Arc<NodeIdentity>, listen: SocketAddr, config: TlsConfig) -> Result<Self> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| transport_error(format!("RV005 cannot listen on {listen}: {e}")))?;
        Self::from_listener(identity, listener, config)
    }

    /// As [`bind`](Self::bind), from outside async code: the transport's tasks run on `runtime`.
    pub fn bind_on(
        runtime: &tokio::runtime::Handle,
        identity: Arc<NodeIdentity>,
        listen: SocketAddr,
        config: TlsConfig,
    ) -> Result<Self> {
        let _entered = runtime.enter();
        let std_listener = std::net::TcpListener::bind(listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| transport_error(format!("RV005 cannot listen on {listen}: {e}")))?;
        let listener = TcpListener::from_std(std_listener).map_err(|e| transport_error(e.to_string()))?;
        Self::from_listener(identity, listener, config)
    }

    fn from_listener(identity: Arc<NodeIdentity>, listener: TcpListener, config: TlsConfig) -> Result<Self> {
        let provider = post_quantum_provider();
        let certified = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])
            .map_err(|e| transport_error(format!("self-signed certificate: {e}")))?;
        let cert = certified.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| transport_error(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .map_err(|e| transport_error(e.to_string()))?;
        let client = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| transport_error(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChannelBound(provider)))
            .with_no_client_auth();
        let local_addr = listener.local_addr().map_err(|e| transport_error(e.to_string()))?;
        let (tx, rx) = mpsc::channel(config.queue * 4);
        let inner = Arc::new(Inner {
            identity,
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            config,
            conns: Mutex::new(HashMap::new()),
            groups: Mutex::new(BTreeMap::new()),
            inbox: tx,
            counters: Counters::default(),
            next_conn: AtomicU64::new(1),
            tasks: Mutex::new(Vec::new()),
        });
        let accept_inner = inner.clone();
        inner.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let inner = accept_inner.clone();
                accept_inner.spawn(async move {
                    let _ = accept(inner, tcp).await;
                });
            }
        });
        Ok(Self { inner, inbox: tokio::sync::Mutex::new(rx), local_addr })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Keeps a connection to `addr` open, redialling with backoff; with `expected`, only that node is accepted.
    pub fn add_peer(&self, addr: SocketAddr, expected: Option<PeerId>) {
        let inner = self.inner.clone();
        self.inner.spawn(async move {
            let mut backoff = inner.config.backoff_min;
            loop {
                // A failed dial is counted by `dial`.
                if let Ok(connection) = dial(inner.clone(), addr, expected).await {
                    backoff = inner.config.backoff_min;
                    connection.await.ok();
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(inner.config.backoff_max);
                inner.counters.redials.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    /// Waits until `peer` (or any peer) is connected and authenticated.
    pub async fn wait_for_peer(&self, peer: Option<PeerId>, timeout: Duration) -> Result<PeerId> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let connected = self.peers();
            if let Some(p) = connected.into_iter().find(|p| peer.is_none_or(|want| want == *p)) {
                return Ok(p);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(transport_error(
                    "RV005 QUDAG_DISCONNECTED: no authenticated connection before the timeout",
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The key exchange group negotiated with `peer`'s latest connection (e.g. `X25519MLKEM768`).
    pub fn negotiated_group(&self, peer: &PeerId) -> Option<String> {
        self.inner.groups.lock().expect("groups").get(peer).cloned()
    }

    /// Counters.
    pub fn stats(&self) -> TlsStats {
        let c = &self.inner.counters;
        TlsStats {
            connections: c.connections.load(Ordering::Relaxed),
            auth_failures: c.auth_failures.load(Ordering::Relaxed),
            oversized: c.oversized.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            redials: c.redials.load(Ordering::Relaxed),
        }
    }
}

impl NetworkTransport for TlsTransport {
    fn name(&self) -> &str {
        "tls"
    }

    fn local_peer(&self) -> PeerId {
        self.inner.identity.peer_id()
    }

    fn peers(&self) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self.inner.conns.lock().expect("connections").keys().copied().collect();
        peers.sort();
        peers
    }

    fn send(&self, to: PeerId, envelope: Envelope) -> BoxFuture<'_, Result<()>> {
        let queue = self.inner.conns.lock().expect("connections").get(&to).map(|(_, tx)| tx.clone());
        Box::pin(async move {
            let queue =
                queue.ok_or_else(|| transport_error(format!("RV005 QUDAG_DISCONNECTED: not connected to {to}")))?;
            match tokio::time::timeout(self.inner.config.send_timeout, queue.send(envelope)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(transport_error(format!("RV005 QUDAG_DISCONNECTED: connection to {to} closed"))),
                Err(_) => {
                    self.inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    Err(transport_error(format!("RV005 peer {to} is not reading; envelope dropped")))
                }
            }
        })
    }

    fn recv(&self) -> BoxFuture<'_, Result<(PeerId, Envelope)>> {
        Box::pin(async move {
            self.inbox.lock().await.recv().await.ok_or_else(|| transport_error("RV005 transport closed"))
        })
    }
}

async fn accept(inner: Arc<Inner>, tcp: TcpStream) -> Result<()> {
    tcp.set_nodelay(true).ok();
    let handshake = async {
        let tls = inner.acceptor.accept(tcp).await.map_err(|e| transport_error(format!("TLS accept: {e}")))?;
        let binding = SessionBinding::of(tls.get_ref().1, b"server", b"client")?;
        authenticate(&inner, TlsStream::Server(tls), binding, None).await
    };
    let (peer, stream) = match tokio::time::timeout(inner.config.handshake_timeout, handshake).await {
        Ok(Ok(done)) => done,
        _ => {
            inner.counters.auth_failures.fetch_add(1, Ordering::Relaxed);
            return Err(transport_error("handshake failed"));
        }
    };
    serve(inner, peer, stream).await;
    Ok(())
}

/// Dials `addr`; on success returns the running connection (it resolves when the connection ends).
async fn dial(
    inner: Arc<Inner>,
    addr: SocketAddr,
    expected: Option<PeerId>,
) -> Result<Pin<Box<dyn Future<Output = Result<()>> + Send>>> {
    let handshake = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| transport_error(format!("connect {addr}: {e}")))?;
        tcp.set_nodelay(true).ok();
        let name = ServerName::try_from(SERVER_NAME).expect("static server name");
        let tls = inner.connector.connect(name, tcp).await.map_err(|e| transport_error(format!("TLS connect: {e}")))?;
        let binding = SessionBinding::of(tls.get_ref().1, b"client", b"server")?;
        authenticate(&inner, TlsStream::Client(tls), binding, expected).await
    };
    match tokio::time::timeout(inner.config.handshake_timeout, handshake).await {
        Ok(Ok((peer, stream))) => Ok(Box::pin(async move {
            serve(inner, peer, stream).await;
            Ok(())
        })),
        Ok(Err(e)) => {
            inner.counters.auth_failures.fetch_add(1, Ordering::Relaxed);
            Err(e)
        }
        Err(_) => {
            inner.counters.auth_failures.fetch_add(1, Ordering::Relaxed);
            Err(transport_error("handshake timed out"))
        }
    }
}

/// What ties an identity to one TLS session: the exporter values each side signs (its role as context), and
/// the negotiated key exchange group.
struct SessionBinding {
    ours: [u8; 32],
    theirs: [u8; 32],
    group: Option<String>,
}

impl SessionBinding {
    fn of<D>(conn: &rustls::ConnectionCommon<D>, our_role: &[u8], their_role: &[u8]) -> Result<Self> {
        let export = |role: &[u8]| {
            conn.export_keying_material([0u8; 32], BINDING_LABEL, Some(role))
                .map_err(|e| transport_error(format!("TLS exporter: {e}")))
        };
        Ok(Self {
            ours: export(our_role)?,
            theirs: export(their_role)?,
            group: conn.negotiated_key_exchange_group().map(|g| format!("{:?}", g.name())),
        })
    }
}

/// Exchanges ML-DSA-signed identities bound to this session; returns the authenticated peer.
async fn authenticate(
    inner: &Arc<Inner>,
    mut stream: TlsStream<TcpStream>,
    binding: SessionBinding,
    expected: Option<PeerId>,
) -> Result<(PeerId, TlsStream<TcpStream>)> {
    let SessionBinding { ours, theirs, group } = binding;
    let auth = Auth {
        identity: inner.identity.public().clone(),
        signature: inner.identity.sign(BINDING_CONTEXT, &ours).map_err(|e| transport_error(e.to_string()))?,
    };
    let bytes = postcard::to_stdvec(&auth).map_err(|e| transport_error(e.to_string()))?;
    write_frame(&mut stream, &bytes).await.map_err(|e| transport_error(e.to_string()))?;
    let reply = read_frame(&mut stream, 64 << 10).await.map_err(|e| transport_error(e.to_string()))?;
    let peer: Auth = postcard::from_bytes(&reply).map_err(|e| transport_error(format!("RV006 bad auth frame: {e}")))?;
    if !peer.identity.verify(BINDING_CONTEXT, &theirs, &peer.signature) {
        return Err(transport_error("RV006 QUDAG_AUTH_FAILED: peer's identity is not bound to this session"));
    }
    let id = peer.identity.peer_id();
    if expected.is_some_and(|want| want != id) {
        return Err(transport_error(format!("RV006 QUDAG_AUTH_FAILED: expected {expected:?}, got {id:?}")));
    }
    if let Some(group) = group {
        inner.groups.lock().expect("groups").insert(id, group);
    }
    Ok((id, stream))
}

/// Runs an authenticated connection until either side closes it.
async fn serve(inner: Arc<Inner>, peer: PeerId, stream: TlsStream<TcpStream>) {
    let conn_id = inner.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<Envelope>(inner.config.queue);
    inner.conns.lock().expect("connections").insert(peer, (conn_id, tx));
    inner.counters.connections.fetch_add(1, Ordering::Relaxed);
    let (mut reader, mut writer) = tokio::io::split(stream);
    let writing = tokio::spawn(async move {
        while let Some(env) = rx.recv().await {
            let Ok(bytes) = postcard::to_stdvec(&WireEnvelope::from(env)) else { continue };
            if write_frame(&mut writer, &bytes).await.is_err() {
                break;
            }
        }
    });
    loop {
        match read_frame(&mut reader, inner.config.max_frame).await {
            Ok(bytes) => {
                let Ok(wire) = postcard::from_bytes::<WireEnvelope>(&bytes) else { break };
                if inner.inbox.send((peer, wire.into())).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    inner.counters.oversized.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
        }
    }
    writing.abort();
    let mut conns = inner.conns.lock().expect("connections");
    if conns.get(&peer).is_some_and(|(id, _)| *id == conn_id) {
        conns.remove(&peer);
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| std::io::Error::other("frame too large"))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(bytes).await?;
    w.flush().await
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<Vec<u8>> {
    let len = r.read_u32().await? as usize;
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {max}"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(sender: PeerId, n: u8, size: usize) -> Envelope {
        Envelope {
            version: 1,
            kind: 2,
            sender,
            sequence: u64::from(n),
            timestamp_ms: 0,
            payload: vec![n; size],
            signature: vec![],
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn post_quantum_session_authenticated_by_node_identity() {
        let a_id = Arc::new(NodeIdentity::generate());
        let b_id = Arc::new(NodeIdentity::generate());
        let localhost: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let a = TlsTransport::bind(a_id.clone(), localhost, TlsConfig::default()).await.unwrap();
        let b = TlsTransport::bind(b_id.clone(), localhost, TlsConfig::default()).await.unwrap();
        b.add_peer(a.local_addr(), Some(a_id.peer_id()));
        assert_eq!(b.wait_for_peer(Some(a_id.peer_id()), Duration::from_secs(10)).await.unwrap(), a_id.peer_id());
        assert_eq!(a.wait_for_peer(Some(b_id.peer_id()), Duration::from_secs(10)).await.unwrap(), b_id.peer_id());
        // The only group offered, and the one negotiated, is the hybrid ML-KEM exchange.
        assert_eq!(b.negotiated_group(&a_id.peer_id()).as_deref(), Some("X25519MLKEM768"));
        assert_eq!(a.negotiated_group(&b_id.peer_id()).as_deref(), Some("X25519MLKEM768"));

        b.send(a_id.peer_id(), env(b_id.peer_id(), 7, 100)).await.unwrap();
        let (from, got) = a.recv().await.unwrap();
        assert_eq!((from, got), (b_id.peer_id(), env(b_id.peer_id(), 7, 100)));
        a.send(b_id.peer_id(), env(a_id.peer_id(), 8, 10)).await.unwrap();
        assert_eq!(b.recv().await.unwrap().1.sequence, 8);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_identity_oversized_frames_and_reconnects() {
        let localhost: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let a_id = Arc::new(NodeIdentity::generate());
        let small = TlsConfig { max_frame: 1000, backoff_min: Duration::from_millis(20), ..TlsConfig::default() };
        let a = TlsTransport::bind(a_id.clone(), localhost, small).await.unwrap();
        // A dialer expecting another node refuses a.
        let c = TlsTransport::bind(Arc::new(NodeIdentity::generate()), localhost, TlsConfig::default()).await.unwrap();
        c.add_peer(a.local_addr(), Some(PeerId([9; 32])));
        assert!(c.wait_for_peer(None, Duration::from_millis(500)).await.is_err());
        assert!(c.stats().auth_failures >= 1);

        let b_id = Arc::new(NodeIdentity::generate());
        let b = TlsTransport::bind(b_id.clone(), localhost, small).await.unwrap();
        b.add_peer(a.local_addr(), None);
        b.wait_for_peer(Some(a_id.peer_id()), Duration::from_secs(10)).await.unwrap();
        // An oversized frame closes the connection at the receiver; the dialer reconnects and traffic resumes.
        b.send(a_id.peer_id(), env(b_id.peer_id(), 1, 5000)).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while a.stats().oversized == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(a.stats().oversized, 1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if b.send(a_id.peer_id(), env(b_id.peer_id(), 2, 10)).await.is_ok()
                && let Ok(Ok((_, got))) = tokio::time::timeout(Duration::from_millis(300), a.recv()).await
            {
                assert_eq!(got.sequence, 2);
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "no reconnect");
        }
        assert!(b.stats().redials >= 1 && b.stats().connections >= 2, "{:?}", b.stats());
    }
}
