//! Network benchmark (a command, not CI):
//!
//! ```text
//! cargo run --release -p ruvector-dag-network --example network_bench [-- --quick]
//! ```
//!
//! Prints operations per second of ML-DSA-65 sign/verify and ML-KEM-768 encapsulate/decapsulate (median of
//! 7 batches), proposal-to-finality latency (median, p90) and throughput with 4 and 16 validators on the
//! in-process loopback transport, and the bytes a 256-dimension pattern takes on the wire.

use ruvector_dag::network::NetworkTransport;
use ruvector_dag_network::loopback::LoopbackHub;
use ruvector_dag_network::node::{Message, Node};
use ruvector_dag_network::privacy::{ClipParams, privatize};
use ruvector_dag_network::protocol::{Action, MICRO, NetworkParams, SharedPattern, SignedItem, ValidatorInfo};
use ruvector_dag_network::state::Outcome;
use ruvector_dag_network::{
    EnvelopeSigner, MessageKind, NodeIdentity, NodeService, ServiceOptions, VerifierPolicy, laplace_noise, open, seal,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Operations per second of `op`, median over 7 batches of `n`.
fn rate(n: usize, mut op: impl FnMut()) -> f64 {
    median(
        (0..7)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..n {
                    op();
                }
                n as f64 / t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn pattern(seed: u32) -> Action {
    let v: Vec<f32> = (0..256u32).map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 1000.0 - 0.5).collect();
    let pattern = privatize(&v, 0.8, 40, laplace_noise(1.0), ClipParams::default()).unwrap();
    Action::ProposePatterns {
        patterns: vec![SharedPattern { pattern, metadata: r#"{"attention":"critical_path","quality":0.8}"#.into() }],
        stake: 10 * MICRO,
    }
}

fn crypto(quick: bool) {
    let n = if quick { 20 } else { 200 };
    let id = NodeIdentity::generate();
    let msg = vec![7u8; 1024];
    let sig = id.sign(b"bench", &msg).unwrap();
    println!("ML-DSA-65 sign      {:>10.0} /s", rate(n, || drop(id.sign(b"bench", &msg).unwrap())));
    println!("ML-DSA-65 verify    {:>10.0} /s", rate(n, || assert!(id.public().verify(b"bench", &msg, &sig))));
    let sealed = seal(id.public(), b"", &msg).unwrap();
    println!(
        "ML-KEM-768 seal 1KB {:>10.0} /s (encapsulate + AEAD)",
        rate(n, || drop(seal(id.public(), b"", &msg).unwrap()))
    );
    println!(
        "ML-KEM-768 open 1KB {:>10.0} /s (decapsulate + AEAD)",
        rate(n, || drop(open(&id, b"", &sealed).unwrap()))
    );
    // What `qudag_encrypt` does per call: parse and check the recipient's key bytes, then seal.
    let key = id.public().kem_key_bytes();
    println!(
        "ML-KEM-768 seal 1KB to key bytes {:>10.0} /s (key parsed and checked each time)",
        rate(n, || drop(ruvector_dag_network::seal_to_kem_key(&key, b"", &msg).unwrap()))
    );
}

fn wire_size() {
    let id = Arc::new(NodeIdentity::generate());
    let item = SignedItem::sign(&id, 1, 0, pattern(1)).unwrap();
    let Action::ProposePatterns { patterns, .. } = &item.body.action else { unreachable!() };
    let pattern_bytes = postcard::to_stdvec(&patterns[0]).unwrap().len();
    let env = EnvelopeSigner::new(id)
        .sign(MessageKind::Proposal, postcard::to_stdvec(&Message::Item(item)).unwrap())
        .unwrap();
    let total = 2 + 2 + 32 + 8 + 8 + env.payload.len() + env.signature.len() + 4;
    println!(
        "wire: one 256-d pattern {pattern_bytes} B; proposal envelope {total} B (item signature and key included)"
    );
}

async fn finality(validators: usize, proposals: usize) {
    let ids: Vec<Arc<NodeIdentity>> = (0..=validators).map(|_| Arc::new(NodeIdentity::generate())).collect();
    let mut params = NetworkParams::new(
        ids[..validators].iter().map(|i| ValidatorInfo { identity: i.public().clone(), stake: 100 * MICRO }).collect(),
    );
    params.genesis = vec![(ids[validators].peer_id(), 1_000_000 * MICRO)];
    let params = Arc::new(params);
    let hub = LoopbackHub::new();
    let services: Vec<NodeService> = ids
        .iter()
        .map(|id| {
            let transport: Arc<dyn NetworkTransport> = Arc::new(hub.endpoint(id.peer_id()));
            let node = Node::new(id.clone(), params.clone(), VerifierPolicy::default());
            NodeService::spawn(node, transport, ServiceOptions { tick: Duration::from_millis(50), faucet: None })
        })
        .collect();
    let client = &services[validators];
    tokio::time::sleep(Duration::from_millis(500)).await; // greetings and the first sync
    let mut latencies = Vec::new();
    let start = Instant::now();
    for k in 0..proposals {
        let t = Instant::now();
        let id = client.submit(pattern(k as u32 + 10), Duration::from_secs(30)).await.unwrap();
        let outcome = client.wait_for(id, Duration::from_secs(30)).await.unwrap();
        assert_eq!(outcome, Outcome::Finalized);
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{validators:>2} validators: proposal→finality median {:.1} ms, p90 {:.1} ms; {:.1} proposals/s (one client, sequential)",
        median(latencies.clone()),
        percentile(latencies, 0.9),
        proposals as f64 / elapsed
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    crypto(quick);
    wire_size();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        finality(4, if quick { 5 } else { 30 }).await;
        finality(16, if quick { 3 } else { 15 }).await;
    });
}
