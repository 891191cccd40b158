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

/// `run` starts a validator from `ruvector.toml`; it journals what it takes in (its votes before they are sent), and
/// after a kill it starts again with its state and keeps validating.
#[test]
fn run_a_validator_that_journals_its_state_across_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let out = node().args(["init", "--keystore"]).arg(dir.path().join("v.key")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = node()
        .args(["network", "--stake", "100", "--faucet", "1000"])
        .arg(dir.path().join("v.pub.json"))
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(dir.path().join("network.json"), &out.stdout).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        dir.path().join("ruvector.toml"),
        format!(
            "[network]\nenabled = true\ntransport = \"tls\"\n\n[network.tls]\nkeystore = \"v.key\"\n\
             listen = \"127.0.0.1:{port}\"\nnetwork_file = \"network.json\"\nfaucet = 1000\n"
        ),
    )
    .unwrap();
    let start = || {
        let mut child = node()
            .args(["run", "--config"])
            .arg(dir.path().join("ruvector.toml"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Kept open while the validator runs: it prints its status every minute.
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert!(line.contains("running (validator)"), "{line}");
        (child, stdout)
    };
    let log = dir.path().join("v.key.journal");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stake_once = |amount: f64| {
        runtime.block_on(async {
            let client = ruvector_dag_network::QuDagClient::connect(&format!("127.0.0.1:{port}")).await.unwrap();
            client.stake(amount).await.unwrap();
        })
    };

    let (mut validator, _out) = start();
    stake_once(10.0);
    let logged = std::fs::metadata(&log).unwrap();
    assert!(logged.len() > 0, "the items and votes were journaled");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(logged.permissions().mode() & 0o777, 0o600);
    validator.kill().unwrap();
    validator.wait().unwrap();

    // Restarted from its keystore and log, it validates new items (each new client's faucet grant and stake).
    let (mut validator, _out) = start();
    stake_once(20.0);
    assert!(std::fs::metadata(&log).unwrap().len() > logged.len(), "new records are appended");
    validator.kill().unwrap();
    validator.wait().unwrap();
}
