//! The plugin registry and building a plugin set from configuration, with plugins registered by this test
//! binary exactly as plugin crates register theirs.

use ruvector_dag::attention::{AttentionScores, DagAttention};
use ruvector_dag::healing::{Issue, RepairContext, RepairOutcome, RepairStrategy};
use ruvector_dag::learning::LearningTier;
use ruvector_dag::network::{BoxFuture, Envelope, NetworkTransport, PeerId};
use ruvector_dag::plugin::{Factory, PluginEntry, PluginKind, PluginParams, PluginRegistration, Registry};
use ruvector_dag::{Config, Error, QueryDag, Result, submit_plugin};

/// Weighs nodes by estimated cost, sharpened by an exponent parameter.
struct CostPower(f64);

impl DagAttention for CostPower {
    fn name(&self) -> &str {
        "cost_power"
    }
    fn forward(&self, dag: &QueryDag) -> Result<AttentionScores> {
        AttentionScores::normalize(dag.nodes().map(|n| n.info.estimates.total_cost.powf(self.0) as f32).collect())
    }
}

fn cost_power(params: &PluginParams) -> Result<Box<dyn DagAttention>> {
    params.deny_unknown(&["exponent"])?;
    Ok(Box::new(CostPower(params.number_in("exponent", 1.0, 0.0..=4.0)?)))
}

struct Uniform;

impl DagAttention for Uniform {
    fn name(&self) -> &str {
        "uniform"
    }
    fn forward(&self, dag: &QueryDag) -> Result<AttentionScores> {
        Ok(AttentionScores::uniform(dag))
    }
}

fn uniform(params: &PluginParams) -> Result<Box<dyn DagAttention>> {
    params.deny_unknown(&[])?;
    Ok(Box::new(Uniform))
}

struct Idle;

impl LearningTier for Idle {
    fn name(&self) -> &str {
        "idle"
    }
}

fn idle(_: &PluginParams) -> Result<Box<dyn LearningTier>> {
    Ok(Box::new(Idle))
}

struct Noop;

impl RepairStrategy for Noop {
    fn name(&self) -> &str {
        "noop"
    }
    fn can_repair(&self, _: &Issue) -> bool {
        true
    }
    fn repair(&self, _: &Issue, _: &mut RepairContext) -> Result<RepairOutcome> {
        Ok(RepairOutcome::default())
    }
}

fn noop(_: &PluginParams) -> Result<Box<dyn RepairStrategy>> {
    Ok(Box::new(Noop))
}

struct Silent;

impl NetworkTransport for Silent {
    fn name(&self) -> &str {
        "silent"
    }
    fn local_peer(&self) -> PeerId {
        PeerId::default()
    }
    fn peers(&self) -> Vec<PeerId> {
        Vec::new()
    }
    fn send(&self, _: PeerId, _: Envelope) -> BoxFuture<'_, Result<()>> {
        Box::pin(std::future::ready(Ok(())))
    }
    fn recv(&self) -> BoxFuture<'_, Result<(PeerId, Envelope)>> {
        Box::pin(std::future::pending())
    }
}

fn silent(_: &PluginParams) -> Result<Box<dyn NetworkTransport>> {
    Ok(Box::new(Silent))
}

submit_plugin!(PluginRegistration {
    name: "cost_power",
    version: "0.1.0",
    description: "cost^exponent",
    factory: Factory::Attention(cost_power)
});
submit_plugin!(PluginRegistration {
    name: "uniform",
    version: "0.1.0",
    description: "equal weights",
    factory: Factory::Attention(uniform)
});
submit_plugin!(PluginRegistration {
    name: "idle",
    version: "0.1.0",
    description: "learns nothing",
    factory: Factory::Learning(idle)
});
submit_plugin!(PluginRegistration {
    name: "noop",
    version: "0.1.0",
    description: "repairs nothing",
    factory: Factory::Repair(noop)
});
submit_plugin!(PluginRegistration {
    name: "silent",
    version: "0.1.0",
    description: "sends nothing",
    factory: Factory::Network(silent)
});

#[test]
fn builtin_collects_every_registration_sorted_by_kind_and_name() {
    let registry = Registry::builtin().unwrap();
    let listed: Vec<(PluginKind, &str)> = registry.iter().map(|e| (e.kind(), e.name())).collect();
    assert_eq!(
        listed,
        vec![
            (PluginKind::Attention, "cost_power"),
            (PluginKind::Attention, "uniform"),
            (PluginKind::Learning, "idle"),
            (PluginKind::Repair, "noop"),
            (PluginKind::Network, "silent"),
        ]
    );
    let entry = registry.find(PluginKind::Attention, "uniform").unwrap();
    assert_eq!((entry.version(), entry.description(), entry.origin()), ("0.1.0", "equal weights", "built-in"));
}

#[test]
fn unknown_names_list_what_is_available() {
    let registry = Registry::builtin().unwrap();
    let err = registry.find(PluginKind::Attention, "topological").unwrap_err();
    assert_eq!(err.to_string(), "unknown attention plugin `topological`; available: cost_power, uniform");
    let err = registry.find(PluginKind::Repair, "reindex").unwrap_err();
    assert_eq!(err.to_string(), "unknown repair plugin `reindex`; available: noop");
}

#[test]
fn duplicate_names_are_refused() {
    let mut registry = Registry::builtin().unwrap();
    let dup = PluginEntry::new("uniform", "9.9.9", "again", "/tmp/libdup.so", Factory::Attention(uniform));
    let err = registry.register(dup).unwrap_err();
    assert!(matches!(err, Error::DuplicatePlugin { .. }));
    assert_eq!(
        err.to_string(),
        "attention plugin `uniform` is registered twice (versions 0.1.0 (built-in) and 9.9.9 (/tmp/libdup.so))"
    );
    // Same name, other kind: fine.
    registry.register(PluginEntry::new("uniform", "1.0.0", "", "test", Factory::Learning(idle))).unwrap();
}

#[test]
fn build_follows_the_configuration() {
    let registry = Registry::builtin().unwrap();
    let set = registry.build(&Config::default()).unwrap();
    let names: Vec<&str> = set.attention.iter().map(|a| a.name()).collect();
    assert_eq!(names, ["cost_power", "uniform"], "absent `enabled` means every registered mechanism");
    assert_eq!(set.fixed_attention, None);
    assert_eq!(set.learning.len(), 1);
    assert_eq!(set.repair.len(), 1);
    assert!(set.network.is_none(), "the network is off by default");

    let config = Config::from_toml_str(
        r#"
        [attention]
        mechanism = "cost_power"
        enabled = ["uniform", "cost_power"]
        [attention.cost_power]
        exponent = 2.0
        [healing]
        enabled = false
        [network]
        enabled = true
        transport = "silent"
        "#,
    )
    .unwrap();
    let set = registry.build(&config).unwrap();
    assert_eq!(set.fixed_attention, Some(1));
    assert!(set.repair.is_empty());
    assert_eq!(set.network.as_ref().map(|n| n.name()), Some("silent"));

    // The parameter reached the plugin: cost^2 weights.
    let mut dag = QueryDag::new();
    dag.add_node_with(0, ruvector_dag::OperatorNode::Limit, ruvector_dag::NodeInfo::with_estimates(0.0, 1.0, 1.0, 4));
    dag.add_node_with(1, ruvector_dag::OperatorNode::Limit, ruvector_dag::NodeInfo::with_estimates(0.0, 3.0, 1.0, 4));
    assert_eq!(set.attention[1].forward(&dag).unwrap().as_slice(), &[0.1, 0.9]);
}

#[test]
fn build_errors_name_the_key() {
    let registry = Registry::builtin().unwrap();
    let build = |toml: &str| registry.build(&Config::from_toml_str(toml).unwrap()).unwrap_err().to_string();
    assert_eq!(
        build("[attention]\nenabled = [\"uniform\", \"topo\"]"),
        "attention.enabled[1] = \"topo\": expected a registered attention plugin (cost_power, uniform)"
    );
    assert_eq!(
        build("[attention.unifrom]\nx = 1"),
        "unknown key `attention.unifrom`; not a registered attention plugin; registered: cost_power, uniform"
    );
    assert_eq!(
        build("[attention]\nmechanism = \"nope\""),
        "attention.mechanism = \"nope\": expected \"auto\" or an enabled mechanism (cost_power, uniform)"
    );
    assert_eq!(
        build("[attention.cost_power]\nexponent = 9"),
        "attention.cost_power.exponent = 9: expected a number in 0..=4"
    );
    assert_eq!(
        build("[attention.uniform]\nsharpness = 2"),
        "unknown key `attention.uniform.sharpness`; known parameters: (none)"
    );
    assert_eq!(
        build("[network]\nenabled = true\ntransport = \"tls\""),
        "network.transport = \"tls\": expected a registered network plugin (silent)"
    );
    assert_eq!(
        build("[learning]\ntiers = [\"instant\"]"),
        "learning.tiers[0] = \"instant\": expected a registered learning plugin (idle)"
    );
}
