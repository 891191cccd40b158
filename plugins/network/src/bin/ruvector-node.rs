//! `ruvector-node`: a validator or client node of the pattern-sharing network, outside PostgreSQL.
//!
//! ```text
//! ruvector-node init --keystore node.key               create an identity (passphrase from $RUVECTOR_NODE_PASSPHRASE)
//! ruvector-node network --stake 100 a.pub.json b.pub.json …   print a network file with these validators
//! ruvector-node run --config ruvector.toml             run the node that [network] and [network.tls] describe
//! ruvector-node testnet --validators 4 [--seconds N]   run a LocalTestnet on 127.0.0.1 and print its endpoints
//! ```
//!
//! `run` reads `ruvector.toml`: `[network] enabled = true`, `transport = "tls"`, and in `[network.tls]` the
//! `keystore`, `listen`, `peers`, plus `network_file` (the JSON `network` printed), `faucet` (rUv per new
//! client, 0 = none) and `journal` (the items and votes the node took in, its own votes written before they are
//! sent; default the keystore's path + `.journal`). Whether the node votes follows from the network file: validators are listed there.

use ruvector_dag::Config;
use ruvector_dag::network::NetworkTransport;
use ruvector_dag::plugin::{PluginKind, PluginParams, Registry};
use ruvector_dag_network::keystore::KdfCost;
use ruvector_dag_network::node::Node;
use ruvector_dag_network::protocol::{NetworkParams, ValidatorInfo, hex_id, to_micro};
use ruvector_dag_network::{Keystore, LocalTestnet, NodeService, PublicIdentity, ServiceOptions, VerifierPolicy};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  ruvector-node init --keystore PATH\n  ruvector-node network [--stake RUV] [--faucet RUV] PUB.json …\n  \
         ruvector-node run --config ruvector.toml\n  ruvector-node testnet [--validators N] [--seconds S]"
    );
    ExitCode::from(2)
}

/// The value after `--name`, if any.
fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn passphrase() -> Fallible<String> {
    std::env::var("RUVECTOR_NODE_PASSPHRASE")
        .map_err(|_| "set RUVECTOR_NODE_PASSPHRASE to the keystore passphrase".into())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else { return usage() };
    let result = match command.as_str() {
        "init" => init(&args),
        "network" => network(&args),
        "run" => run(&args),
        "testnet" => testnet(&args),
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ruvector-node: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init(args: &[String]) -> Fallible<()> {
    let path = PathBuf::from(flag(args, "--keystore").ok_or("init needs --keystore PATH")?);
    let identity = Keystore::open_or_create(&path, passphrase()?.as_bytes(), KdfCost::default())?;
    let public = path.with_extension("pub.json");
    std::fs::write(&public, serde_json::to_string(identity.public())?)?;
    println!("node id {}\npublic identity written to {}", hex_id(&identity.peer_id().0), public.display());
    Ok(())
}

fn network(args: &[String]) -> Fallible<()> {
    let stake = to_micro(flag(args, "--stake").map_or(Ok(100.0), |s| s.parse())?)?;
    let faucet = flag(args, "--faucet").map(|s| s.parse::<f64>()).transpose()?;
    let mut validators = Vec::new();
    let mut skip = false;
    for a in &args[1..] {
        if skip {
            skip = false;
            continue;
        }
        if a.starts_with("--") {
            skip = true;
            continue;
        }
        let identity: PublicIdentity = serde_json::from_str(&std::fs::read_to_string(a)?)?;
        validators.push(ValidatorInfo { identity, stake });
    }
    if validators.is_empty() {
        return Err("name at least one validator's public identity file".into());
    }
    let mut params = NetworkParams::new(validators);
    if let Some(f) = faucet {
        params.faucet = Some(to_micro(f)?);
        params.genesis =
            params.validators.iter().map(|v| (v.identity.peer_id(), to_micro(f * 1.0e6).unwrap_or(0))).collect();
    }
    println!("{}", serde_json::to_string_pretty(&params)?);
    Ok(())
}

fn run(args: &[String]) -> Fallible<()> {
    let path = PathBuf::from(flag(args, "--config").ok_or("run needs --config ruvector.toml")?);
    let config = Config::load(&path)?;
    if !config.network.enabled {
        return Err(format!("{}: [network] enabled is false", path.display()).into());
    }
    let name = config.network.transport.clone();
    let mut params = config.plugin_params(PluginKind::Network, &name);
    // Our own keys in [network.tls]; the rest goes to the transport plugin.
    let base = path.parent().unwrap_or(Path::new("."));
    let mut map = params.as_map().clone();
    let network_file = map.remove("network_file").and_then(|v| v.as_str().map(str::to_string));
    let faucet = map.remove("faucet").and_then(|v| v.as_f64()).unwrap_or(0.0);
    let journal = map.remove("journal").and_then(|v| v.as_str().map(|p| base.join(p)));
    if let Some(k) = map.get("keystore").and_then(|v| v.as_str()) {
        map.insert("keystore".into(), base.join(k).to_string_lossy().into_owned().into());
    }
    params = PluginParams::new(params.scope().to_string(), map);
    let network_file = base.join(network_file.ok_or("[network.tls] network_file is required")?);
    let net: NetworkParams = serde_json::from_str(&std::fs::read_to_string(&network_file)?)?;
    let keystore = params.get::<String>("keystore", "a path")?.ok_or("[network.tls] keystore is required")?;
    let identity = Arc::new(Keystore::open(Path::new(&keystore), passphrase()?.as_bytes())?);
    // What the node takes in, own votes before they are sent (see `journal`), next to its keystore by default.
    let journal = journal.unwrap_or_else(|| PathBuf::from(format!("{keystore}.journal")));

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let registry = Registry::builtin()?;
        let transport: Arc<dyn NetworkTransport> = Arc::from(registry.network(&name, &params)?);
        if transport.local_peer() != identity.peer_id() {
            return Err::<(), Box<dyn std::error::Error + Send + Sync>>(
                "the transport runs as another identity".into(),
            );
        }
        let validator = net.validator(&identity.peer_id()).is_some();
        let node = Node::new(identity.clone(), Arc::new(net), VerifierPolicy::default()).with_journal(&journal)?;
        let options = ServiceOptions {
            faucet: (faucet > 0.0).then(|| to_micro(faucet)).transpose()?,
            ..ServiceOptions::default()
        };
        let service = NodeService::spawn(node, transport, options);
        println!("node {} running ({})", hex_id(&identity.peer_id().0), if validator { "validator" } else { "client" });
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let s = service.status().await?;
            println!(
                "peers {} round {} finalized {} rejected {} pending {} refused {}",
                s.peers.len(),
                s.round,
                s.finalized,
                s.rejected,
                s.pending,
                s.stats.envelopes.rejected()
            );
        }
    })
}

fn testnet(args: &[String]) -> Fallible<()> {
    let n: usize = flag(args, "--validators").map_or(Ok(4), |s| s.parse())?;
    let seconds: Option<u64> = flag(args, "--seconds").map(|s| s.parse()).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let testnet = LocalTestnet::start(n).await?;
        for i in 0..testnet.len() {
            println!("{}", testnet.endpoint(i));
        }
        match seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => tokio::signal::ctrl_c().await?,
        }
        Ok(())
    })
}
