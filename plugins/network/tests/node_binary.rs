//! The `ruvector-node` binary's offline subcommands.

use std::process::Command;

fn node() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ruvector-node"));
    c.env("RUVECTOR_NODE_PASSPHRASE", "test passphrase");
    c
}

#[test]
fn init_network_and_testnet() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b"] {
        let out = node().args(["init", "--keystore"]).arg(dir.path().join(format!("{name}.key"))).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("node id "));
    }
    let out = node()
        .args(["network", "--stake", "50"])
        .arg(dir.path().join("a.pub.json"))
        .arg(dir.path().join("b.pub.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let params: ruvector_dag_network::protocol::NetworkParams = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(params.validators.len(), 2);
    assert_eq!(params.total_stake(), 100 * ruvector_dag_network::protocol::MICRO);

    // A wrong passphrase is refused with the keystore's message.
    let out = node()
        .env("RUVECTOR_NODE_PASSPHRASE", "wrong")
        .args(["init", "--keystore"])
        .arg(dir.path().join("a.key"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));

    let out = node().args(["testnet", "--validators", "3", "--seconds", "1"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let endpoints: Vec<_> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(endpoints.len(), 3);
    assert!(endpoints.iter().all(|e| e.parse::<ruvector_dag_network::Endpoint>().is_ok_and(|e| e.peer.is_some())));
    assert_eq!(node().arg("bogus").status().unwrap().code(), Some(2));
}
