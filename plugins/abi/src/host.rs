//! The host's side (feature `host`): open a plugin library, check its declaration, and call its plugins
//! through safe wrappers.
//!
//! Checks, in order, each with its own [`LoadError`]: the library loads; it exports [`DECLARATION_SYMBOL`]; the
//! declaration starts with [`MAGIC`]; its ABI version is [`ABI_VERSION`]; every type's size, alignment and field
//! fingerprint equal the host's ([`LAYOUTS`]); every descriptor has a known kind, a valid unique name, UTF-8
//! metadata and the constructor of its kind. Only then is any plugin function callable. These checks catch
//! build mistakes, not malice: a library's initialisers run when it is opened, so only load files you trust
//! (the framework's loader refuses world-writable files and can pin a SHA-256).
//!
//! Libraries are never unloaded: plugin objects and function pointers stay valid for the life of the process.

use crate::ffi::*;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Why a library was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The dynamic loader could not open it (not a shared library, missing dependency, wrong architecture).
    Open(String),
    /// It exports no [`DECLARATION_SYMBOL`]: not a ruvector-dag plugin library.
    MissingSymbol,
    /// The symbol exists but does not start with [`MAGIC`].
    BadMagic(u64),
    /// Built against another ABI version.
    AbiVersion {
        /// The library's version.
        found: u32,
    },
    /// A type's layout differs from the host's.
    Layout(String),
    /// A descriptor is malformed.
    Descriptor(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Open(e) => write!(f, "cannot be loaded: {e}"),
            LoadError::MissingSymbol => write!(
                f,
                "is not a ruvector-dag plugin: it exports no symbol `{DECLARATION_SYMBOL}` (build it with \
                 ruvector_dag_plugin_abi::export_plugins!)"
            ),
            LoadError::BadMagic(m) => write!(
                f,
                "is not a ruvector-dag plugin: `{DECLARATION_SYMBOL}` starts with {m:#018x}, expected {MAGIC:#018x}"
            ),
            LoadError::AbiVersion { found } => write!(
                f,
                "was built against plugin ABI version {found}, but this ruvector-dag speaks version {ABI_VERSION}: \
                 rebuild the plugin against ruvector-dag-plugin-abi {}",
                env!("CARGO_PKG_VERSION")
            ),
            LoadError::Layout(e) => write!(f, "has an incompatible ABI layout: {e}; rebuild the plugin"),
            LoadError::Descriptor(e) => write!(f, "declares an invalid plugin: {e}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// The kind of a plugin in a library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An attention mechanism.
    Attention,
    /// A repair strategy.
    Repair,
}

/// A checked plugin of a loaded library.
#[derive(Clone)]
pub struct Plugin {
    kind: Kind,
    name: &'static str,
    version: &'static str,
    description: &'static str,
    create_attention: Option<AttentionConstructor>,
    create_repair: Option<RepairConstructor>,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("version", &self.version)
            .finish()
    }
}

/// A loaded, checked library.
#[derive(Debug, Clone)]
pub struct Library {
    name: &'static str,
    version: &'static str,
    plugins: Vec<Plugin>,
}

impl Library {
    /// The library's name (its crate name).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The library's version.
    pub fn version(&self) -> &'static str {
        self.version
    }

    /// Its plugins, in declaration order.
    pub fn plugins(&self) -> &[Plugin] {
        &self.plugins
    }
}

/// Opens the shared library at `path`, checks its declaration and returns its plugins. The library stays
/// loaded for the life of the process, also when it is refused (its initialisers have run by then).
///
/// # Errors
/// The first failed check.
pub fn load(path: &Path) -> Result<Library, LoadError> {
    // SAFETY: opening a library runs its initialisers; the caller has decided to trust the file (see the module
    // documentation). It is never closed, so nothing it hands out can dangle.
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| LoadError::Open(e.to_string()))?;
    let library: &'static libloading::Library = Box::leak(Box::new(library));
    // SAFETY: the symbol is a static `PluginDeclaration` if present; `check` reads only the header before
    // validating the rest.
    let declaration = unsafe { library.get::<*const PluginDeclaration>(DECLARATION_SYMBOL.as_bytes()) }
        .map_err(|_| LoadError::MissingSymbol)?;
    let declaration: *const PluginDeclaration = *declaration;
    if declaration.is_null() {
        return Err(LoadError::MissingSymbol);
    }
    // SAFETY: a non-null static of the library, alive for the process (never unloaded).
    check(unsafe { &*declaration })
}

/// Checks a declaration (what [`load`] does once the symbol is found).
///
/// # Errors
/// The first failed check.
pub fn check(declaration: &'static PluginDeclaration) -> Result<Library, LoadError> {
    if declaration.magic != MAGIC {
        return Err(LoadError::BadMagic(declaration.magic));
    }
    if declaration.abi_version != ABI_VERSION {
        return Err(LoadError::AbiVersion { found: declaration.abi_version });
    }
    check_layouts(declaration)?;
    let library =
        declaration.library.to_str().map_err(|_| LoadError::Descriptor("library name is not UTF-8".into()))?;
    let version = declaration
        .library_version
        .to_str()
        .map_err(|_| LoadError::Descriptor("library version is not UTF-8".into()))?;
    if declaration.plugin_count == 0 || declaration.plugins.is_null() {
        return Err(LoadError::Descriptor("the library declares no plugins".into()));
    }
    if declaration.plugin_count > 1024 {
        return Err(LoadError::Descriptor(format!("{} plugins declared (at most 1024)", declaration.plugin_count)));
    }
    // SAFETY: the layouts match, so `plugins` points to `plugin_count` descriptors of this type in the library's
    // static data.
    let descriptors = unsafe { std::slice::from_raw_parts(declaration.plugins, declaration.plugin_count) };
    let mut plugins: Vec<Plugin> = Vec::with_capacity(descriptors.len());
    for (i, d) in descriptors.iter().enumerate() {
        let plugin = describe(d).map_err(|e| LoadError::Descriptor(format!("plugin #{i}: {e}")))?;
        if plugins.iter().any(|p| p.kind == plugin.kind && p.name == plugin.name) {
            return Err(LoadError::Descriptor(format!("plugin #{i}: the name `{}` is declared twice", plugin.name)));
        }
        plugins.push(plugin);
    }
    Ok(Library { name: library, version, plugins })
}

fn check_layouts(declaration: &PluginDeclaration) -> Result<(), LoadError> {
    let n = declaration.layout_len as usize;
    if declaration.layout.is_null() || n == 0 || n > 1024 {
        return Err(LoadError::Layout(format!("the layout table has {n} entries")));
    }
    // SAFETY: `TypeLayout` is fixed across ABI versions (it is part of the header); the library's table holds
    // `layout_len` entries in its static data.
    let theirs = unsafe { std::slice::from_raw_parts(declaration.layout, n) };
    for ours in LAYOUTS {
        let name = ours.name.as_str_lossy();
        let Some(t) = theirs.iter().find(|t| t.name.to_str() == Ok(name)) else {
            return Err(LoadError::Layout(format!("type `{name}` is missing from the plugin's table")));
        };
        if (t.size, t.align, t.fingerprint) != (ours.size, ours.align, ours.fingerprint) {
            return Err(LoadError::Layout(format!(
                "type `{name}` is {} bytes (align {}, fields {:016x}) in the plugin, {} bytes (align {}, fields \
                 {:016x}) here",
                t.size, t.align, t.fingerprint, ours.size, ours.align, ours.fingerprint
            )));
        }
    }
    if let Some(extra) = theirs.iter().find(|t| !LAYOUTS.iter().any(|o| o.name.to_str() == t.name.to_str())) {
        return Err(LoadError::Layout(format!("the plugin's table has unknown type `{}`", extra.name.as_str_lossy())));
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

fn describe(d: &'static PluginDescriptor) -> Result<Plugin, String> {
    let text = |s: FfiStr<'static>, what: &str| s.to_str().map_err(|_| format!("{what} is not UTF-8"));
    let name = text(d.name, "name")?;
    if !valid_name(name) {
        return Err(format!(
            "name {name:?} is not a plugin name (lower-case letters, digits and `_`, starting with a letter, at most \
             63 bytes)"
        ));
    }
    let version = text(d.version, "version")?;
    let description = text(d.description, "description")?;
    let kind = match (d.kind, d.create_attention, d.create_repair) {
        (KIND_ATTENTION, Some(_), None) => Kind::Attention,
        (KIND_REPAIR, None, Some(_)) => Kind::Repair,
        (KIND_ATTENTION | KIND_REPAIR, _, _) => {
            return Err(format!("`{name}` must set exactly the constructor of its kind"));
        }
        (other, _, _) => {
            return Err(format!(
                "`{name}` has kind {other}; plugin libraries provide attention ({KIND_ATTENTION}) and repair \
                 ({KIND_REPAIR}) plugins"
            ));
        }
    };
    Ok(Plugin {
        kind,
        name,
        version,
        description,
        create_attention: d.create_attention,
        create_repair: d.create_repair,
    })
}

/// A plugin call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The plugin returned an error with this message.
    Failed(String),
    /// The plugin panicked with this message; the panic stopped at the library boundary.
    Panicked(String),
    /// The plugin broke the protocol (unknown status, impossible result).
    Protocol(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Failed(m) => f.write_str(m),
            CallError::Panicked(m) => write!(f, "panicked: {m}"),
            CallError::Protocol(m) => write!(f, "broke the plugin protocol: {m}"),
        }
    }
}

impl std::error::Error for CallError {}

/// Runs one plugin call with a fresh error sink and maps its status.
fn call(f: impl FnOnce(&FfiSink<'_>) -> u32) -> Result<(), CallError> {
    let mut message = String::new();
    let status = f(&FfiSink::new(&mut message));
    match status {
        STATUS_OK => Ok(()),
        STATUS_ERROR => Err(CallError::Failed(message)),
        STATUS_PANIC => Err(CallError::Panicked(message)),
        other => Err(CallError::Protocol(format!("status {other}"))),
    }
}

impl Plugin {
    /// Attention or repair.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Registered name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The plugin's version.
    pub fn version(&self) -> &'static str {
        self.version
    }

    /// One-line description.
    pub fn description(&self) -> &'static str {
        self.description
    }

    /// Builds an instance of this attention mechanism from `params` (under `scope`, for messages).
    ///
    /// # Errors
    /// The plugin's error or panic; [`CallError::Protocol`] when this is not an attention plugin.
    pub fn create_attention(&self, scope: &str, params: &[FfiParam<'_>]) -> Result<Attention, CallError> {
        let ctor =
            self.create_attention.ok_or_else(|| CallError::Protocol(format!("`{}` is not attention", self.name)))?;
        let params = FfiParams { scope: FfiStr::new(scope), items: params.as_ptr(), len: params.len() };
        let mut out = std::mem::MaybeUninit::<FfiAttention>::uninit();
        // SAFETY: a checked constructor of a never-unloaded library; every pointer is live for the call.
        call(|error| unsafe { ctor(&params, out.as_mut_ptr(), error) })?;
        // SAFETY: on success the constructor has written `out`.
        Ok(Attention { raw: unsafe { out.assume_init() } })
    }

    /// Builds an instance of this repair strategy from `params` (under `scope`, for messages).
    ///
    /// # Errors
    /// The plugin's error or panic; [`CallError::Protocol`] when this is not a repair plugin.
    pub fn create_repair(&self, scope: &str, params: &[FfiParam<'_>]) -> Result<Repair, CallError> {
        let ctor = self.create_repair.ok_or_else(|| CallError::Protocol(format!("`{}` is not repair", self.name)))?;
        let params = FfiParams { scope: FfiStr::new(scope), items: params.as_ptr(), len: params.len() };
        let mut out = std::mem::MaybeUninit::<FfiRepair>::uninit();
        // SAFETY: a checked constructor of a never-unloaded library; every pointer is live for the call.
        call(|error| unsafe { ctor(&params, out.as_mut_ptr(), error) })?;
        // SAFETY: on success the constructor has written `out`.
        Ok(Repair { raw: unsafe { out.assume_init() } })
    }
}

/// A live attention mechanism of a plugin library. Released when dropped.
#[derive(Debug)]
pub struct Attention {
    raw: FfiAttention,
}

// SAFETY: plugin types are `Send + Sync` (`AttentionPlugin`'s bounds; the documented contract for libraries
// written by hand); the state is only used through `&self` calls that the plugin must allow concurrently.
unsafe impl Send for Attention {}
// SAFETY: as above.
unsafe impl Sync for Attention {}

impl Attention {
    /// Raw scores of the plan `nodes`/`edges` into `scores` (one per node).
    ///
    /// # Errors
    /// [`CallError::Protocol`] when an edge is out of range or `scores` has the wrong length (checked before the
    /// call); the plugin's error or panic.
    pub fn forward(&self, nodes: &[FfiNode<'_>], edges: &[FfiEdge], scores: &mut [f32]) -> Result<(), CallError> {
        if scores.len() != nodes.len() {
            return Err(CallError::Protocol(format!("{} scores for {} nodes", scores.len(), nodes.len())));
        }
        if let Some(e) = edges.iter().find(|e| e.input as usize >= nodes.len() || e.consumer as usize >= nodes.len()) {
            return Err(CallError::Protocol(format!(
                "edge {} -> {} outside {} nodes",
                e.input,
                e.consumer,
                nodes.len()
            )));
        }
        let dag =
            FfiDag { nodes: nodes.as_ptr(), node_count: nodes.len(), edges: edges.as_ptr(), edge_count: edges.len() };
        // SAFETY: the state and function come from this library's constructor; all pointers are live and in range.
        call(|error| unsafe { (self.raw.forward)(self.raw.state, &dag, scores.as_mut_ptr(), scores.len(), error) })
    }
}

impl Drop for Attention {
    fn drop(&mut self) {
        // SAFETY: released once, by the library that made it.
        unsafe { (self.raw.release)(self.raw.state) }
    }
}

/// A live repair strategy of a plugin library. Released when dropped.
#[derive(Debug)]
pub struct Repair {
    raw: FfiRepair,
}

// SAFETY: plugin types are `Send + Sync` (`RepairPlugin`'s bounds, the documented contract).
unsafe impl Send for Repair {}
// SAFETY: as above.
unsafe impl Sync for Repair {}

/// A repair's result as the plugin reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairResult {
    /// Something was changed.
    pub applied: bool,
    /// Summary.
    pub detail: String,
}

impl Repair {
    /// Whether the strategy can fix `issue`.
    ///
    /// # Errors
    /// The plugin's error or panic.
    pub fn can_repair(&self, issue: &FfiIssue<'_>) -> Result<bool, CallError> {
        let mut answer = 0u32;
        // SAFETY: state and function from this library's constructor; pointers live for the call.
        call(|error| unsafe { (self.raw.can_repair)(self.raw.state, issue, &mut answer, error) })?;
        Ok(answer != 0)
    }

    /// Runs the repair; recorded actions are appended to `actions`.
    ///
    /// # Errors
    /// The plugin's error or panic.
    pub fn repair(
        &self,
        issue: &FfiIssue<'_>,
        dry_run: bool,
        actions: &mut Vec<String>,
    ) -> Result<RepairResult, CallError> {
        let ctx = FfiRepairContext { dry_run: u32::from(dry_run), actions: FfiSink::lines(actions) };
        let mut applied = 0u32;
        let mut detail = String::new();
        let detail_sink = FfiSink::new(&mut detail);
        // SAFETY: state and function from this library's constructor; pointers live for the call.
        call(|error| unsafe { (self.raw.repair)(self.raw.state, issue, &ctx, &mut applied, &detail_sink, error) })?;
        Ok(RepairResult { applied: applied != 0, detail })
    }

    /// Judges a repair: 0 improved, 1 unchanged, 2 regressed, 3 unknown.
    ///
    /// # Errors
    /// The plugin's error or panic; [`CallError::Protocol`] for another verdict.
    pub fn verify(
        &self,
        issue: &FfiIssue<'_>,
        outcome: &RepairResult,
        dry_run: bool,
        actions: &mut Vec<String>,
    ) -> Result<u32, CallError> {
        let ctx = FfiRepairContext { dry_run: u32::from(dry_run), actions: FfiSink::lines(actions) };
        let outcome = FfiOutcome { applied: u32::from(outcome.applied), detail: FfiStr::new(&outcome.detail) };
        let mut verdict = u32::MAX;
        // SAFETY: state and function from this library's constructor; pointers live for the call.
        call(|error| unsafe { (self.raw.verify)(self.raw.state, issue, &outcome, &ctx, &mut verdict, error) })?;
        if verdict > 3 {
            return Err(CallError::Protocol(format!("verdict {verdict}")));
        }
        Ok(verdict)
    }

    /// Undoes a repair.
    ///
    /// # Errors
    /// The plugin's error or panic.
    pub fn rollback(
        &self,
        issue: &FfiIssue<'_>,
        outcome: &RepairResult,
        dry_run: bool,
        actions: &mut Vec<String>,
    ) -> Result<(), CallError> {
        let ctx = FfiRepairContext { dry_run: u32::from(dry_run), actions: FfiSink::lines(actions) };
        let outcome = FfiOutcome { applied: u32::from(outcome.applied), detail: FfiStr::new(&outcome.detail) };
        // SAFETY: state and function from this library's constructor; pointers live for the call.
        call(|error| unsafe { (self.raw.rollback)(self.raw.state, issue, &outcome, &ctx, error) })
    }

    /// The strategy's estimate of the repair's duration.
    ///
    /// # Errors
    /// The plugin's error or panic; [`CallError::Protocol`] for a non-finite estimate.
    pub fn estimated_duration(&self, issue: &FfiIssue<'_>) -> Result<Option<Duration>, CallError> {
        let mut ms = -1.0f64;
        // SAFETY: state and function from this library's constructor; pointers live for the call.
        call(|error| unsafe { (self.raw.estimated_duration_ms)(self.raw.state, issue, &mut ms, error) })?;
        if ms.is_nan() || ms.is_infinite() {
            return Err(CallError::Protocol(format!("estimated duration {ms} ms")));
        }
        Ok((ms >= 0.0).then(|| Duration::from_secs_f64(ms / 1e3)))
    }
}

impl Drop for Repair {
    fn drop(&mut self) {
        // SAFETY: released once, by the library that made it.
        unsafe { (self.raw.release)(self.raw.state) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::author::*;

    struct Fanout;
    impl AttentionPlugin for Fanout {
        fn new(params: &Params<'_>) -> Result<Self, String> {
            params.deny_unknown(&[])?;
            Ok(Fanout)
        }
        fn forward(&self, dag: &DagView<'_>, scores: &mut [f32]) -> Result<(), String> {
            for (p, s) in scores.iter_mut().enumerate() {
                *s = 1.0 + dag.consumers(p).count() as f32;
            }
            if dag.node(0).operator.to_str() == Ok("Boom") {
                panic!("boom at node {}", dag.node(0).id);
            }
            Ok(())
        }
    }

    struct Noop;
    impl RepairPlugin for Noop {
        fn new(_: &Params<'_>) -> Result<Self, String> {
            Ok(Noop)
        }
        fn can_repair(&self, issue: &IssueView<'_>) -> bool {
            issue.kind == "latency_anomaly"
        }
        fn repair(&self, issue: &IssueView<'_>, ctx: &mut RepairCtx<'_, '_>) -> Result<Outcome, String> {
            ctx.record(&format!("looked at {}", issue.target));
            Ok(Outcome { applied: !ctx.is_dry_run(), detail: "done".into() })
        }
    }

    const PLUGINS: &[PluginDescriptor] = &[
        PluginDescriptor::attention::<Fanout>("fanout", "1.0.0", "fan-out"),
        PluginDescriptor::repair::<Noop>("noop", "1.0.0", "records"),
    ];
    static GOOD: PluginDeclaration = PluginDeclaration::new("test", "0.0.1", PLUGINS);

    fn leak(d: PluginDeclaration) -> &'static PluginDeclaration {
        Box::leak(Box::new(d))
    }

    #[test]
    fn a_good_declaration_loads_and_its_plugins_run() {
        let lib = check(&GOOD).unwrap();
        assert_eq!((lib.name(), lib.version(), lib.plugins().len()), ("test", "0.0.1", 2));
        let fanout = &lib.plugins()[0];
        assert_eq!((fanout.kind(), fanout.name()), (Kind::Attention, "fanout"));
        let mech = fanout.create_attention("attention.fanout", &[]).unwrap();
        let nodes = [
            FfiNode::new(1, "Seq Scan", 1.0, 1.0),
            FfiNode::new(2, "Seq Scan", 1.0, 1.0),
            FfiNode::new(3, "Hash Join", 3.0, 1.0),
        ];
        let edges = [FfiEdge { input: 0, consumer: 2 }, FfiEdge { input: 1, consumer: 2 }];
        let mut scores = [9.0f32; 3];
        mech.forward(&nodes, &edges, &mut scores).unwrap();
        assert_eq!(scores, [2.0, 2.0, 1.0]);

        let noop = lib.plugins()[1].create_repair("healing.noop", &[]).unwrap();
        let issue = FfiIssue {
            id: 7,
            kind: FfiStr::new("latency_anomaly"),
            target: FfiStr::new("q1"),
            severity: 1,
            detail: FfiStr::new(""),
        };
        assert!(noop.can_repair(&issue).unwrap());
        let mut actions = Vec::new();
        let r = noop.repair(&issue, true, &mut actions).unwrap();
        assert_eq!(r, RepairResult { applied: false, detail: "done".into() });
        assert_eq!(actions, ["looked at q1"]);
        assert_eq!(noop.verify(&issue, &r, true, &mut actions).unwrap(), 3);
        assert_eq!(
            noop.rollback(&issue, &r, true, &mut actions),
            Err(CallError::Failed("rollback is not supported".into()))
        );
        assert_eq!(noop.estimated_duration(&issue).unwrap(), None);
    }

    #[test]
    fn errors_and_panics_come_back_as_errors() {
        let lib = check(&GOOD).unwrap();
        let params = [FfiParam::number("decay", 0.5)];
        let err = lib.plugins()[0].create_attention("attention.fanout", &params).unwrap_err();
        assert_eq!(err, CallError::Failed("unknown key `attention.fanout.decay`; known parameters: (none)".into()));
        let mech = lib.plugins()[0].create_attention("attention.fanout", &[]).unwrap();
        let nodes = [FfiNode::new(42, "Boom", 1.0, 1.0)];
        let mut scores = [0.0f32];
        assert_eq!(mech.forward(&nodes, &[], &mut scores), Err(CallError::Panicked("boom at node 42".into())));
        let bad_edge = [FfiEdge { input: 0, consumer: 1 }];
        assert!(matches!(mech.forward(&nodes, &bad_edge, &mut scores), Err(CallError::Protocol(_))));
        assert!(matches!(mech.forward(&nodes, &[], &mut []), Err(CallError::Protocol(_))));
    }

    #[test]
    fn version_layout_and_descriptor_mismatches_are_refused() {
        let mut d = PluginDeclaration::new("test", "0.0.1", PLUGINS);
        d.abi_version = ABI_VERSION + 1;
        assert_eq!(check(leak(d)).unwrap_err(), LoadError::AbiVersion { found: ABI_VERSION + 1 });

        let mut d = PluginDeclaration::new("test", "0.0.1", PLUGINS);
        d.magic = 7;
        assert_eq!(check(leak(d)).unwrap_err(), LoadError::BadMagic(7));

        let mut layouts = LAYOUTS.to_vec();
        layouts[2].size += 8;
        let layouts: &'static [TypeLayout] = layouts.leak();
        let mut d = PluginDeclaration::new("test", "0.0.1", PLUGINS);
        d.layout = layouts.as_ptr();
        let err = check(leak(d)).unwrap_err().to_string();
        assert!(err.starts_with("has an incompatible ABI layout: type `FfiNode` is "), "{err}");

        let mut d = PluginDeclaration::new("test", "0.0.1", PLUGINS);
        d.layout_len -= 1;
        let err = check(leak(d)).unwrap_err().to_string();
        assert!(err.contains("type `PluginDeclaration` is missing"), "{err}");

        let twice: &'static [PluginDescriptor] = vec![PLUGINS[0], PLUGINS[0]].leak();
        let err = check(leak(PluginDeclaration::new("t", "1", twice))).unwrap_err().to_string();
        assert_eq!(err, "declares an invalid plugin: plugin #1: the name `fanout` is declared twice");

        let mut bad = PLUGINS[0];
        bad.name = FfiStr::new("Fan-Out");
        let err = check(leak(PluginDeclaration::new("t", "1", vec![bad].leak()))).unwrap_err().to_string();
        assert!(err.contains("name \"Fan-Out\" is not a plugin name"), "{err}");

        let mut bad = PLUGINS[0];
        bad.create_repair = PLUGINS[1].create_repair;
        let err = check(leak(PluginDeclaration::new("t", "1", vec![bad].leak()))).unwrap_err().to_string();
        assert!(err.contains("must set exactly the constructor of its kind"), "{err}");

        let mut bad = PLUGINS[0];
        bad.kind = 2;
        let err = check(leak(PluginDeclaration::new("t", "1", vec![bad].leak()))).unwrap_err().to_string();
        assert!(err.contains("has kind 2"), "{err}");
    }

    #[test]
    fn missing_files_and_non_plugins_are_refused() {
        let err = load(Path::new("/nonexistent/libx.so")).unwrap_err();
        assert!(matches!(err, LoadError::Open(_)), "{err:?}");
        // The C library is a shared object without our symbol.
        let libc = ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        if let Some(libc) = libc {
            assert_eq!(load(Path::new(libc)).unwrap_err(), LoadError::MissingSymbol);
        }
    }
}
