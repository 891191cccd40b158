//! Out-of-tree plugins: the example plugin and a deliberately faulty one are built here with cargo (each
//! variant of the faulty one per feature), then loaded through `[[plugins.dynamic]]` exactly as a server
//! would load them. Every refusal names the file and the mismatch; a panicking plugin is an error, not an
//! abort.

use ruvector_dag::dag::{JoinType, NodeInfo, OperatorNode};
use ruvector_dag::healing::{Issue, IssueKind, RepairContext, Severity};
use ruvector_dag::plugin::{PluginKind, PluginParams, Registry};
use ruvector_dag::{Config, QueryDag};
use ruvector_dag_attention as _;
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The plugin libraries, built once per test binary into a directory of their own.
struct Built {
    dir: PathBuf,
    example: PathBuf,
    faulty: PathBuf,
    wrong_abi: PathBuf,
    bad_layout: PathBuf,
    no_declaration: PathBuf,
    builtin_name: PathBuf,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
        // A target directory of its own: the outer `cargo test` may hold the workspace's lock.
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-build");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("plugins-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let build = |package: &str, lib: &str, feature: Option<&str>, label: &str| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.current_dir(root)
                .env("CARGO_TARGET_DIR", &target)
                .args(["build", "--quiet", "--locked", "-p", package]);
            if let Some(f) = feature {
                cmd.args(["--features", f]);
            }
            let status = cmd.status().expect("run cargo");
            assert!(status.success(), "building {package} {feature:?} failed");
            let out = dir.join(format!("{label}.so"));
            std::fs::copy(target.join("debug").join(format!("lib{lib}.so")), &out).unwrap();
            std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
            out
        };
        let faulty = |feature, label| {
            build("ruvector-dag-test-plugin-faulty", "ruvector_dag_test_plugin_faulty", feature, label)
        };
        Built {
            example: build("plugin-example-attention", "plugin_example_attention", None, "example"),
            faulty: faulty(None, "faulty"),
            wrong_abi: faulty(Some("wrong-abi"), "wrong_abi"),
            bad_layout: faulty(Some("bad-layout"), "bad_layout"),
            no_declaration: faulty(Some("no-declaration"), "no_declaration"),
            builtin_name: faulty(Some("builtin-name"), "builtin_name"),
            dir,
        }
    })
}

fn sha256(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Seq Scan (cost 100) and a hashed Index Scan (cost 10) under a Hash Join (total 130).
fn join_plan() -> QueryDag {
    let mut dag = QueryDag::new();
    dag.add_node_with(
        1,
        OperatorNode::SeqScan { table: "orders".into() },
        NodeInfo::with_estimates(0.0, 100.0, 1000.0, 8),
    );
    dag.add_node_with(
        2,
        OperatorNode::SeqScan { table: "customer".into() },
        NodeInfo::with_estimates(0.0, 10.0, 10.0, 8),
    );
    dag.add_node_with(3, OperatorNode::Hash, NodeInfo::with_estimates(10.0, 10.0, 10.0, 8));
    dag.add_node_with(
        4,
        OperatorNode::HashJoin { join_type: JoinType::Inner, hash_cond: Some("(o_custkey = c_custkey)".into()) },
        NodeInfo::with_estimates(10.0, 130.0, 1000.0, 16),
    );
    dag.add_edge(2, 3).unwrap();
    dag.add_edge(1, 4).unwrap();
    dag.add_edge(3, 4).unwrap();
    dag
}

fn config(toml: &str) -> Config {
    Config::from_toml_str(toml).unwrap()
}

fn load_one(registry: &mut Registry, path: &Path, sha256: Option<&str>) -> Result<Vec<(PluginKind, String)>, String> {
    let pin = sha256.map(|h| format!("sha256 = \"{h}\"\n")).unwrap_or_default();
    let c = config(&format!("[[plugins.dynamic]]\npath = {:?}\n{pin}", path.display().to_string()));
    let mut loads = registry.load_dynamic(&c.plugins.dynamic);
    assert_eq!(loads.len(), 1);
    let load = loads.remove(0);
    assert_eq!(load.path, path);
    load.result.map_err(|e| e.to_string())
}

#[test]
fn the_example_plugin_loads_scores_validly_and_is_chosen_by_name() {
    let b = built();
    let mut registry = Registry::builtin().unwrap();
    let c = config(&format!(
        "[attention]\nmechanism = \"exclusive_cost\"\nenabled = [\"topological\", \"exclusive_cost\"]\n\
         [attention.exclusive_cost]\nfloor = 0.0\n\
         [[plugins.dynamic]]\npath = {:?}\nsha256 = \"{}\"\n",
        b.example.display().to_string(),
        sha256(&b.example)
    ));
    let loads = registry.load_dynamic(&c.plugins.dynamic);
    assert_eq!(loads[0].result.as_ref().unwrap(), &vec![(PluginKind::Attention, "exclusive_cost".to_owned())]);

    let entry = registry.find(PluginKind::Attention, "exclusive_cost").unwrap();
    assert_eq!(entry.version(), "0.1.0");
    assert_eq!(entry.origin(), b.example.display().to_string());
    assert!(entry.is_dynamic() && entry.factory().is_none());
    assert!(entry.description().starts_with("weight by the cost each operator adds itself"));

    // Selected through the configuration, like a built-in mechanism.
    let set = registry.build(&c).unwrap();
    let mech = &set.attention[set.fixed_attention.expect("a fixed mechanism")];
    assert_eq!(mech.name(), "exclusive_cost");
    let dag = join_plan();
    let scores = mech.forward(&dag).unwrap();
    let w = scores.as_slice();
    assert_eq!(w.len(), dag.node_count());
    assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{w:?}");
    assert!(w.iter().all(|&x| (0.0..=1.0).contains(&x)));
    // Own costs: scan 100, scan 10, hash 0, join 130 - 100 - 10 = 20.
    assert!((w[0] - 100.0 / 130.0).abs() < 1e-5, "{w:?}");
    assert!((w[3] - 20.0 / 130.0).abs() < 1e-5, "{w:?}");
    assert_eq!(scores, mech.forward(&dag).unwrap(), "the same plan gives the same scores");

    // Its parameters are validated by the plugin, and the error names the plugin and the key.
    let bad = PluginParams::from_json("attention.exclusive_cost", serde_json::json!({"floor": 2})).unwrap();
    assert_eq!(
        registry.attention("exclusive_cost", &bad).err().unwrap().to_string(),
        "plugin `exclusive_cost`: attention.exclusive_cost.floor = 2: expected a number in 0..=1"
    );
}

#[test]
fn every_refusal_names_the_file_and_the_mismatch() {
    let b = built();
    let mut registry = Registry::builtin().unwrap();
    let builtin = registry.iter().count();
    let refused = |r: Result<_, String>| r.expect_err("refused");

    let missing = b.dir.join("missing.so");
    let e = refused(load_one(&mut registry, &missing, None));
    assert!(e.starts_with(&format!("plugin library {} cannot be read: ", missing.display())), "{e}");

    let corrupt = b.dir.join("corrupt.so");
    std::fs::write(&corrupt, b"\x7fELF but not really a shared object, just bytes").unwrap();
    let e = refused(load_one(&mut registry, &corrupt, None));
    assert!(e.starts_with(&format!("plugin library {} cannot be loaded: ", corrupt.display())), "{e}");

    let e = refused(load_one(&mut registry, &b.no_declaration, None));
    assert!(e.contains("is not a ruvector-dag plugin: it exports no symbol `ruvector_dag_plugin_declaration`"), "{e}");

    let e = refused(load_one(&mut registry, &b.wrong_abi, None));
    assert!(
        e.contains(&format!(
            "{} was built against plugin ABI version {}, but this ruvector-dag speaks version {}",
            b.wrong_abi.display(),
            ruvector_dag_plugin_abi::ABI_VERSION + 1,
            ruvector_dag_plugin_abi::ABI_VERSION
        )),
        "{e}"
    );

    let e = refused(load_one(&mut registry, &b.bad_layout, None));
    assert!(e.contains("has an incompatible ABI layout: type `FfiNode` is "), "{e}");

    let zeros = "0".repeat(64);
    let e = refused(load_one(&mut registry, &b.example, Some(&zeros)));
    assert_eq!(
        e,
        format!(
            "plugin library {} has SHA-256 {}, but the configuration pins {zeros}",
            b.example.display(),
            sha256(&b.example)
        )
    );

    let writable = b.dir.join("world_writable.so");
    std::fs::copy(&b.example, &writable).unwrap();
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o666)).unwrap();
    let e = refused(load_one(&mut registry, &writable, None));
    assert!(e.contains("is world-writable (mode 666)"), "{e}");

    let open_dir = b.dir.join("open");
    std::fs::create_dir_all(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let in_open_dir = open_dir.join("example.so");
    std::fs::copy(&b.example, &in_open_dir).unwrap();
    std::fs::set_permissions(&in_open_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = refused(load_one(&mut registry, &in_open_dir, None));
    assert!(e.contains(&format!("is in world-writable directory {} (mode 777)", open_dir.display())), "{e}");

    let e = refused(load_one(&mut registry, &b.builtin_name, None));
    assert!(
        e.contains("its attention plugin `topological` clashes with the one already registered from built-in"),
        "{e}"
    );

    // Nothing of a refused library was registered; a good one still loads, once.
    assert_eq!(registry.iter().count(), builtin);
    load_one(&mut registry, &b.example, Some(&sha256(&b.example))).unwrap();
    let copy = b.dir.join("example_copy.so");
    std::fs::copy(&b.example, &copy).unwrap();
    let e = refused(load_one(&mut registry, &copy, None));
    assert!(e.contains(&format!("clashes with the one already registered from {}", b.example.display())), "{e}");
    assert_eq!(registry.iter().count(), builtin + 1);
}

#[test]
fn a_library_that_fails_does_not_stop_the_others() {
    let b = built();
    let mut registry = Registry::builtin().unwrap();
    let c = config(&format!(
        "[[plugins.dynamic]]\npath = {:?}\n[[plugins.dynamic]]\npath = {:?}\n",
        b.wrong_abi.display().to_string(),
        b.faulty.display().to_string()
    ));
    let loads = registry.load_dynamic(&c.plugins.dynamic);
    assert!(loads[0].result.is_err());
    let names: Vec<_> = loads[1].result.as_ref().unwrap().iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["panicky", "negative", "picky", "flaky_repair"]);
}

#[test]
fn plugin_panics_and_bad_output_become_errors() {
    let b = built();
    let mut registry = Registry::new();
    load_one(&mut registry, &b.faulty, None).unwrap();
    let dag = join_plan();
    let none = |scope: &str| PluginParams::empty(scope);

    let panicky = registry.attention("panicky", &none("attention.panicky")).unwrap();
    for _ in 0..2 {
        // Still usable after a panic: the panic stopped at the library boundary.
        assert_eq!(
            panicky.forward(&dag).unwrap_err().to_string(),
            "plugin `panicky`: panicked: index out of bounds: the plan has 4 nodes"
        );
    }
    let negative = registry.attention("negative", &none("attention.negative")).unwrap();
    assert_eq!(
        negative.forward(&dag).unwrap_err().to_string(),
        "plugin `negative`: raw score -1 at position 0: expected a finite non-negative number"
    );
    let with_param = PluginParams::from_json("attention.picky", serde_json::json!({"x": [1, 2]})).unwrap();
    assert_eq!(
        registry.attention("picky", &with_param).err().unwrap().to_string(),
        "plugin `picky`: unknown key `attention.picky.x`; known parameters: (none)"
    );

    let repair = registry.repair("flaky_repair", &none("healing.flaky_repair")).unwrap();
    let issue = |kind| Issue::new(1, kind, "q1", Severity::Warning, "");
    assert!(repair.can_repair(&issue(IssueKind::LatencyAnomaly)));
    assert!(!repair.can_repair(&issue(IssueKind::IndexDegraded)), "a panicking answer is a no");
    let mut ctx = RepairContext::dry_run();
    assert_eq!(
        repair.repair(&issue(IssueKind::LatencyAnomaly), &mut ctx).unwrap_err().to_string(),
        "plugin `flaky_repair`: repair of q1 failed"
    );
    assert_eq!(ctx.actions(), ["tried q1"]);
    let outcome = ruvector_dag::healing::RepairOutcome::default();
    assert_eq!(
        repair.rollback(&issue(IssueKind::LatencyAnomaly), &outcome, &mut ctx).unwrap_err().to_string(),
        "plugin `flaky_repair`: rollback is not supported"
    );
    assert_eq!(
        repair.verify(&issue(IssueKind::LatencyAnomaly), &outcome, &mut ctx).unwrap(),
        ruvector_dag::healing::Verdict::Unknown
    );
}
