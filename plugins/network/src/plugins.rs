//! The transports as `network` plugins, chosen with `[network] transport` in `ruvector.toml`.
//!
//! - `loopback`: an endpoint on this process's hub with a fresh identity (tests, single-process demos).
//! - `tls`: [`crate::tls::TlsTransport`]; its table `[network.tls]` names `keystore` (required; the passphrase
//!   is read from the environment variable named by `passphrase_env`, default `RUVECTOR_NODE_PASSPHRASE`),
//!   `listen` (default `127.0.0.1:7440`) and `peers` (`host:port` or `ruvector://<node id>@host:port`). It must
//!   be made inside a tokio runtime, which its connections then use.

use crate::client::Endpoint;
use crate::identity::NodeIdentity;
use crate::keystore::Keystore;
use crate::loopback::{LoopbackHub, LoopbackTransport};
use crate::tls::{TlsConfig, TlsTransport};
use ruvector_dag::network::NetworkTransport;
use ruvector_dag::plugin::{Factory, PluginParams, PluginRegistration};
use ruvector_dag::{Error, Result, submit_plugin};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn plugin_error(plugin: &str, message: impl Into<String>) -> Error {
    Error::Plugin { plugin: plugin.into(), message: message.into() }
}

/// The process's loopback hub.
pub fn process_hub() -> &'static LoopbackHub {
    static HUB: OnceLock<LoopbackHub> = OnceLock::new();
    HUB.get_or_init(LoopbackHub::new)
}

fn make_loopback(params: &PluginParams) -> Result<Box<dyn NetworkTransport>> {
    params.deny_unknown(&[])?;
    let transport: LoopbackTransport = process_hub().endpoint(NodeIdentity::generate().peer_id());
    Ok(Box::new(transport))
}

fn make_tls(params: &PluginParams) -> Result<Box<dyn NetworkTransport>> {
    params.deny_unknown(&["keystore", "passphrase_env", "listen", "peers"])?;
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| plugin_error("tls", "the tls transport must be created inside a tokio runtime"))?;
    let keystore: PathBuf = params
        .get::<String>("keystore", "a path")?
        .ok_or_else(|| plugin_error("tls", "[network.tls] keystore is required"))?
        .into();
    let env = params.get::<String>("passphrase_env", "an environment variable name")?;
    let env = env.as_deref().unwrap_or("RUVECTOR_NODE_PASSPHRASE");
    let passphrase =
        std::env::var(env).map_err(|_| plugin_error("tls", format!("environment variable {env} is not set")))?;
    let identity = Keystore::open(&keystore, passphrase.as_bytes()).map_err(|e| plugin_error("tls", e.to_string()))?;
    let listen = params.get::<String>("listen", "an address host:port")?.unwrap_or_else(|| "127.0.0.1:7440".into());
    let listen = listen.parse().map_err(|e| plugin_error("tls", format!("listen {listen}: {e}")))?;
    let peers: Vec<Endpoint> = params
        .get::<Vec<String>>("peers", "a list of host:port or ruvector://<id>@host:port")?
        .unwrap_or_default()
        .iter()
        .map(|p| p.parse().map_err(|e: crate::NetworkError| plugin_error("tls", e.to_string())))
        .collect::<Result<_>>()?;
    let transport = TlsTransport::bind_on(&runtime, Arc::new(identity), listen, TlsConfig::default())?;
    for peer in peers {
        let _entered = runtime.enter();
        transport.add_peer(peer.addr, peer.peer);
    }
    Ok(Box::new(transport))
}

submit_plugin!(PluginRegistration {
    name: "loopback",
    version: VERSION,
    description: "in-process endpoints on one hub (tests, single-process demos)",
    factory: Factory::Network(make_loopback),
});
submit_plugin!(PluginRegistration {
    name: "tls",
    version: VERSION,
    description: "TLS 1.3 over TCP with X25519MLKEM768; peers authenticated by ML-DSA-65 node identities",
    factory: Factory::Network(make_tls),
});

#[cfg(test)]
mod tests {
    use super::*;
    use ruvector_dag::plugin::PluginKind;

    #[test]
    fn transports_are_registered_and_tls_needs_a_runtime() {
        let registry = ruvector_dag::plugin::Registry::builtin().unwrap();
        let names = registry.names(PluginKind::Network);
        assert!(names.contains(&"loopback".to_string()) && names.contains(&"tls".to_string()), "{names:?}");
        let lb = registry.network("loopback", &PluginParams::empty("network.loopback")).unwrap();
        assert_eq!(lb.name(), "loopback");
        let err = registry.network("tls", &PluginParams::empty("network.tls")).err().unwrap();
        assert!(err.to_string().contains("tokio runtime"), "{err}");
    }
}
