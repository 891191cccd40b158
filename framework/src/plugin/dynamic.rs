//! Out-of-tree plugins: shared libraries built against `ruvector-dag-plugin-abi`, listed in `ruvector.toml`
//! under `[[plugins.dynamic]]`, registered so that they are chosen by name exactly like built-in plugins.
//!
//! Before the dynamic loader touches a file, it must be a regular file that is not world-writable, in a
//! directory that is not world-writable (unless sticky, like `/tmp`), and, when `sha256` is given, hash to it.
//! The file is hashed and loaded through the same open descriptor (`/proc/self/fd/N`), so the bytes checked
//! are the bytes loaded. The ABI crate then checks the declaration (ABI version, type layouts, descriptors).
//! Each library loads or fails on its own: a refused library names the file and the reason, and the others
//! are still registered. Libraries are never unloaded.
//!
//! Every call into a plugin goes through the ABI crate's wrappers: a plugin's error or panic comes back as
//! [`Error::Plugin`] naming it, and attention scores are validated (finite, non-negative) and normalised here.

use super::{PluginKind, PluginParams, Registry};
use crate::attention::{AttentionScores, DagAttention};
use crate::config::DynamicPlugin;
use crate::dag::QueryDag;
use crate::error::{Error, Result};
use crate::healing::{Issue, IssueKind, RepairContext, RepairOutcome, RepairStrategy, Severity, Verdict};
use ruvector_dag_plugin_abi::host::{self, CallError, Kind, RepairResult};
use ruvector_dag_plugin_abi::{FfiEdge, FfiIssue, FfiNode, FfiParam, FfiStr};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What happened to one `[[plugins.dynamic]]` entry.
#[derive(Debug)]
pub struct DynamicLoad {
    /// The library's path, as configured.
    pub path: PathBuf,
    /// The plugins it registered (`kind`, `name`), or why it was refused.
    pub result: Result<Vec<(PluginKind, String)>>,
}

impl Registry {
    /// Loads every configured plugin library in order and registers its plugins. A library that fails any
    /// check registers nothing and is reported in its [`DynamicLoad`]; the others are unaffected.
    pub fn load_dynamic(&mut self, libraries: &[DynamicPlugin]) -> Vec<DynamicLoad> {
        libraries.iter().map(|spec| DynamicLoad { path: spec.path.clone(), result: self.load_library(spec) }).collect()
    }

    fn load_library(&mut self, spec: &DynamicPlugin) -> Result<Vec<(PluginKind, String)>> {
        let refuse = |reason: String| Error::DynamicPlugin { path: spec.path.display().to_string(), reason };
        let library = open_checked(spec).map_err(refuse)?;
        let origin = spec.path.display().to_string();
        let mut entries = Vec::with_capacity(library.plugins().len());
        for plugin in library.plugins() {
            let plugin = plugin.clone();
            let (name, version, description) = (plugin.name(), plugin.version(), plugin.description());
            entries.push(match plugin.kind() {
                Kind::Attention => super::PluginEntry::dynamic_attention(
                    name,
                    version,
                    description,
                    &origin,
                    Arc::new(move |params: &PluginParams| {
                        let ffi = FfiParams::new(params);
                        let raw = plugin
                            .create_attention(params.scope(), &ffi.items())
                            .map_err(|e| plugin_error(plugin.name(), &e))?;
                        Ok(Box::new(DynamicAttention { name: plugin.name(), raw }) as Box<dyn DagAttention>)
                    }),
                ),
                Kind::Repair => super::PluginEntry::dynamic_repair(
                    name,
                    version,
                    description,
                    &origin,
                    Arc::new(move |params: &PluginParams| {
                        let ffi = FfiParams::new(params);
                        let raw = plugin
                            .create_repair(params.scope(), &ffi.items())
                            .map_err(|e| plugin_error(plugin.name(), &e))?;
                        Ok(Box::new(DynamicRepair { name: plugin.name(), raw }) as Box<dyn RepairStrategy>)
                    }),
                ),
            });
        }
        // All or nothing: a clash leaves the registry as it was.
        for e in &entries {
            if let Ok(existing) = self.find(e.kind(), e.name()) {
                return Err(refuse(format!(
                    "its {} plugin `{}` clashes with the one already registered from {}",
                    e.kind(),
                    e.name(),
                    existing.origin()
                )));
            }
        }
        let names = entries.iter().map(|e| (e.kind(), e.name().to_owned())).collect();
        for e in entries {
            self.register(e)?;
        }
        Ok(names)
    }
}

/// Checks the file, hashes it when pinned, and loads it through the descriptor that was checked.
fn open_checked(spec: &DynamicPlugin) -> std::result::Result<host::Library, String> {
    let path = &spec.path;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    check_not_world_writable(path, &meta)?;
    let mut file = File::open(path).map_err(|e| format!("cannot be opened: {e}"))?;
    if let Some(expected) = &spec.sha256 {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(|e| format!("cannot be read: {e}"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let actual: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(format!("has SHA-256 {actual}, but the configuration pins {expected}"));
        }
    }
    let via_fd = fd_path(&file);
    let loaded = host::load(via_fd.as_deref().unwrap_or(path));
    // Keep the descriptor open for good, also when the library was refused (it stays loaded): the dynamic
    // loader knows it by the name `/proc/self/fd/N`, and would hand it out again for a later library opened
    // under a reused N.
    if via_fd.is_some() {
        std::mem::forget(file);
    }
    loaded.map_err(|e| e.to_string())
}

#[cfg(target_os = "linux")]
fn fd_path(file: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    let p = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    p.exists().then_some(p)
}

#[cfg(not(target_os = "linux"))]
fn fd_path(_: &File) -> Option<PathBuf> {
    None
}

#[cfg(unix)]
fn check_not_world_writable(path: &Path, meta: &std::fs::Metadata) -> std::result::Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode();
    if mode & 0o002 != 0 {
        return Err(format!(
            "is world-writable (mode {:o}): anyone could replace the code this server runs; chmod o-w it",
            mode & 0o7777
        ));
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir_mode =
        std::fs::metadata(dir).map_err(|e| format!("its directory cannot be read: {e}"))?.permissions().mode();
    // A sticky world-writable directory (/tmp) lets others add files but not replace this one.
    if dir_mode & 0o002 != 0 && dir_mode & 0o1000 == 0 {
        return Err(format!(
            "is in world-writable directory {} (mode {:o}): anyone could replace it",
            dir.display(),
            dir_mode & 0o7777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_not_world_writable(_: &Path, _: &std::fs::Metadata) -> std::result::Result<(), String> {
    Ok(())
}

fn plugin_error(name: &str, e: &CallError) -> Error {
    Error::Plugin { plugin: name.to_owned(), message: e.to_string() }
}

/// A plugin's parameters in FFI form: owned JSON text for arrays and tables, borrowed for the call.
struct FfiParams<'a> {
    params: &'a PluginParams,
    json: Vec<Option<String>>,
}

impl<'a> FfiParams<'a> {
    fn new(params: &'a PluginParams) -> Self {
        let json = params
            .as_map()
            .values()
            .map(|v| matches!(v, Value::Array(_) | Value::Object(_)).then(|| v.to_string()))
            .collect();
        FfiParams { params, json }
    }

    fn items(&self) -> Vec<FfiParam<'_>> {
        self.params
            .as_map()
            .iter()
            .zip(&self.json)
            .filter_map(|((k, v), json)| match v {
                Value::Null => None,
                Value::Bool(b) => Some(FfiParam::boolean(k, *b)),
                Value::Number(n) => Some(match n.as_i64() {
                    Some(i) => FfiParam::integer(k, i),
                    None => FfiParam::number(k, n.as_f64().unwrap_or(f64::NAN)),
                }),
                Value::String(s) => Some(FfiParam::string(k, s)),
                Value::Array(_) | Value::Object(_) => Some(FfiParam::json(k, json.as_deref().unwrap_or("null"))),
            })
            .collect()
    }
}

/// An attention mechanism living in a plugin library.
struct DynamicAttention {
    name: &'static str,
    raw: host::Attention,
}

impl DagAttention for DynamicAttention {
    fn name(&self) -> &str {
        self.name
    }

    fn forward(&self, dag: &QueryDag) -> Result<AttentionScores> {
        let nodes: Vec<FfiNode<'_>> = dag
            .nodes()
            .map(|n| {
                let e = &n.info.estimates;
                let mut node = FfiNode::new(n.id as u64, n.op.kind().name(), e.total_cost, e.rows);
                node.category = FfiStr::new(n.op.kind().category().name());
                node.relation = FfiStr::new(n.op.table().unwrap_or(""));
                node.index = FfiStr::new(n.op.index().unwrap_or(""));
                node.filter = FfiStr::new(n.info.filter.as_deref().unwrap_or(""));
                node.startup_cost = e.startup_cost;
                node.plan_width = e.width;
                node.parallel_aware = u32::from(n.info.parallel_aware);
                if let Some(a) = &n.info.actual {
                    node.has_actuals = 1;
                    node.actual_startup_ms = a.startup_ms;
                    node.actual_total_ms = a.total_ms;
                    node.actual_rows = a.rows;
                    node.actual_loops = a.loops;
                }
                node
            })
            .collect();
        let edges: Vec<FfiEdge> = dag
            .edges()
            .map(|(from, to)| FfiEdge {
                input: dag.position(from).expect("edge endpoints are nodes") as u32,
                consumer: dag.position(to).expect("edge endpoints are nodes") as u32,
            })
            .collect();
        let mut raw = vec![0.0f32; nodes.len()];
        self.raw.forward(&nodes, &edges, &mut raw).map_err(|e| plugin_error(self.name, &e))?;
        AttentionScores::normalize(raw).map_err(|e| match e {
            Error::Plugin { message, .. } => Error::Plugin { plugin: self.name.to_owned(), message },
            other => other,
        })
    }
}

/// A repair strategy living in a plugin library.
struct DynamicRepair {
    name: &'static str,
    raw: host::Repair,
}

fn issue_kind(kind: &IssueKind) -> &str {
    match kind {
        IssueKind::LatencyAnomaly => "latency_anomaly",
        IssueKind::IndexDegraded => "index_degraded",
        IssueKind::LearningDrift => "learning_drift",
        IssueKind::PatternQuality => "pattern_quality",
        IssueKind::Other(name) => name,
    }
}

fn ffi_issue(issue: &Issue) -> FfiIssue<'_> {
    FfiIssue {
        id: issue.id,
        kind: FfiStr::new(issue_kind(&issue.kind)),
        target: FfiStr::new(&issue.target),
        severity: match issue.severity {
            Severity::Info => 0,
            Severity::Warning => 1,
            Severity::Critical => 2,
        },
        detail: FfiStr::new(&issue.detail),
    }
}

/// Runs a call with a scratch action list, then records the actions in `ctx`.
fn with_actions<T>(ctx: &mut RepairContext, f: impl FnOnce(bool, &mut Vec<String>) -> T) -> T {
    let mut actions = Vec::new();
    let out = f(ctx.is_dry_run(), &mut actions);
    for a in actions {
        ctx.record(a);
    }
    out
}

impl RepairStrategy for DynamicRepair {
    fn name(&self) -> &str {
        self.name
    }

    /// A plugin that fails to answer cannot repair the issue.
    fn can_repair(&self, issue: &Issue) -> bool {
        self.raw.can_repair(&ffi_issue(issue)).unwrap_or(false)
    }

    fn repair(&self, issue: &Issue, ctx: &mut RepairContext) -> Result<RepairOutcome> {
        let r = with_actions(ctx, |dry, actions| self.raw.repair(&ffi_issue(issue), dry, actions))
            .map_err(|e| plugin_error(self.name, &e))?;
        Ok(RepairOutcome { applied: r.applied, detail: r.detail })
    }

    fn verify(&self, issue: &Issue, outcome: &RepairOutcome, ctx: &mut RepairContext) -> Result<Verdict> {
        let result = RepairResult { applied: outcome.applied, detail: outcome.detail.clone() };
        let v = with_actions(ctx, |dry, actions| self.raw.verify(&ffi_issue(issue), &result, dry, actions))
            .map_err(|e| plugin_error(self.name, &e))?;
        Ok(match v {
            0 => Verdict::Improved,
            1 => Verdict::Unchanged,
            2 => Verdict::Regressed,
            _ => Verdict::Unknown,
        })
    }

    fn rollback(&self, issue: &Issue, outcome: &RepairOutcome, ctx: &mut RepairContext) -> Result<()> {
        let result = RepairResult { applied: outcome.applied, detail: outcome.detail.clone() };
        with_actions(ctx, |dry, actions| self.raw.rollback(&ffi_issue(issue), &result, dry, actions))
            .map_err(|e| plugin_error(self.name, &e))
    }

    fn estimated_duration(&self, issue: &Issue) -> Option<Duration> {
        self.raw.estimated_duration(&ffi_issue(issue)).ok().flatten()
    }
}
