//! Saving and restoring what an engine has learned: both adapters, both EWC++ states, the ReasoningBank (with
//! pattern ids) and the execution count — everything but the trajectory buffer (the host persists executions
//! itself) and the derived IVF index (rebuilt on restore).
//!
//! Format: `b"RVLS"`, a little-endian `u16` format version, the CRC-32 of the body (`u32` LE), then the body in
//! postcard. A corrupt, truncated or foreign blob, or one from an engine of other dimensions or ranks, is an
//! error that says which; the engine is then left unchanged.

use crate::bank::BankState;
use crate::engine::DagSonaEngine;
use crate::engine::SonaConfig;
use crate::ewc::EwcPlusPlus;
use ruvector_dag::{Error, Result};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"RVLS";
/// Version of the body's layout; bump on any change to [`EngineState`].
pub const STATE_VERSION: u16 = 1;
const HEADER: usize = 4 + 2 + 4;

#[derive(Serialize, Deserialize)]
struct EngineState {
    dim: u32,
    micro_rank: u32,
    base_rank: u32,
    micro: Vec<f32>,
    base: Vec<f32>,
    ewc: EwcPlusPlus,
    base_ewc: EwcPlusPlus,
    bank: BankState,
    queries: u64,
}

fn error(message: impl Into<String>) -> Error {
    Error::Plugin { plugin: "learning".into(), message: format!("learned state: {}", message.into()) }
}

/// What [`DagSonaEngine::restore_state`] restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// Patterns restored into the bank.
    pub patterns: usize,
    /// Executions the restored engine had learned from.
    pub queries: u64,
}

impl DagSonaEngine {
    /// Everything the engine learned, as bytes (see the [module docs](self)).
    pub fn save_state(&self) -> Vec<u8> {
        let state = EngineState {
            dim: self.config.dim as u32,
            micro_rank: self.micro.rank() as u32,
            base_rank: self.base.rank() as u32,
            micro: self.micro.parameters().to_vec(),
            base: self.base.parameters().to_vec(),
            ewc: self.ewc.clone(),
            base_ewc: self.base_ewc.clone(),
            bank: self.reasoning_bank.to_state(),
            queries: self.queries(),
        };
        let body = postcard::to_stdvec(&state).expect("engine state serialises");
        let mut out = Vec::with_capacity(HEADER + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&STATE_VERSION.to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// An engine shaped like the one that saved `bytes` (its embedding dimension and adapter ranks; everything
    /// else from `config`), with that state restored.
    ///
    /// # Errors
    /// As [`restore_state`](Self::restore_state).
    pub fn from_state(mut config: SonaConfig, bytes: &[u8]) -> Result<(Self, Restored)> {
        let state = decode(bytes)?;
        config.dim = state.dim as usize;
        config.micro_rank = state.micro_rank as usize;
        config.base_rank = state.base_rank as usize;
        if config.dim == 0 || !(1..=2).contains(&config.micro_rank) || config.base_rank == 0 {
            return Err(error(format!(
                "invalid shape (embedding_dim, micro_lora_rank, base_lora_rank) = ({}, {}, {})",
                config.dim, config.micro_rank, config.base_rank
            )));
        }
        let mut engine = DagSonaEngine::new(config);
        let restored = engine.apply(state)?;
        Ok((engine, restored))
    }

    /// Replaces what the engine learned with a [`save_state`](Self::save_state) blob. The configuration (learning
    /// rates, thresholds, budgets) stays the engine's own; the IVF index is rebuilt with it.
    ///
    /// # Errors
    /// A blob that is not a learned state, is corrupt or of another format version, or was saved by an engine of
    /// another embedding dimension or adapter rank. The engine is unchanged then.
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<Restored> {
        let state = decode(bytes)?;
        self.apply(state)
    }

    fn apply(&mut self, state: EngineState) -> Result<Restored> {
        let expect = (self.config.dim, self.micro.rank(), self.base.rank());
        let found = (state.dim as usize, state.micro_rank as usize, state.base_rank as usize);
        if expect != found {
            return Err(error(format!(
                "saved with (embedding_dim, micro_lora_rank, base_lora_rank) = {found:?}, this engine has {expect:?}"
            )));
        }
        if state.micro.len() != self.micro.parameter_count()
            || state.base.len() != self.base.parameter_count()
            || !state.ewc.covers(self.micro.parameter_count())
            || !state.base_ewc.covers(self.base.parameter_count())
        {
            return Err(error("parameter counts do not match the adapters"));
        }
        // Everything validated but the bank's patterns: restore the bank first so a bad pattern changes nothing.
        self.reasoning_bank.restore(state.bank).map_err(|e| error(e.to_string()))?;
        self.micro.parameters_mut().copy_from_slice(&state.micro);
        self.base.parameters_mut().copy_from_slice(&state.base);
        // λ and the decay are configuration: keep the engine's.
        let (lambda, decay, base_lambda, base_decay) =
            (self.ewc.lambda, self.ewc.decay, self.base_ewc.lambda, self.base_ewc.decay);
        self.ewc = state.ewc;
        self.base_ewc = state.base_ewc;
        (self.ewc.lambda, self.ewc.decay, self.base_ewc.lambda, self.base_ewc.decay) =
            (lambda, decay, base_lambda, base_decay);
        self.set_queries(state.queries);
        self.reasoning_bank.rebuild_index(self.config.clusters, state.queries);
        Ok(Restored { patterns: self.reasoning_bank.len(), queries: state.queries })
    }
}

fn decode(bytes: &[u8]) -> Result<EngineState> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return Err(error("not a ruvector learned-state blob (bad magic)"));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != STATE_VERSION {
        return Err(error(format!("format version {version}, this build reads {STATE_VERSION}")));
    }
    let crc = u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
    let body = &bytes[HEADER..];
    if crc32fast::hash(body) != crc {
        return Err(error("checksum mismatch (corrupt or truncated)"));
    }
    postcard::from_bytes(body).map_err(|e| error(format!("decoding: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruvector_dag::dag::generator::{DagShape, generate};
    use ruvector_dag::learning::ExecutionMetrics;

    fn trained() -> DagSonaEngine {
        let mut e = DagSonaEngine::new(SonaConfig::default());
        let fast = vec![("enable_nestloop".to_owned(), "off".to_owned())];
        for seed in 0..12 {
            let dag = generate(DagShape::BushyJoin, 20 + seed as usize, seed);
            let native = ExecutionMetrics { latency_ms: 10.0 + seed as f64, ..Default::default() };
            e.post_query(&dag, &native).unwrap();
            let steered = ExecutionMetrics { latency_ms: 3.0, settings: fast.clone(), ..Default::default() };
            e.post_query(&dag, &steered).unwrap();
        }
        e.run_background_cycle().unwrap();
        e
    }

    #[test]
    fn a_restored_engine_predicts_and_advises_as_the_saved_one() {
        let mut a = trained();
        let blob = a.save_state();
        let mut b = DagSonaEngine::new(SonaConfig::default());
        let restored = b.restore_state(&blob).unwrap();
        assert_eq!(restored, Restored { patterns: a.reasoning_bank.len(), queries: 24 });
        assert_eq!(b.micro.parameters(), a.micro.parameters());
        assert_eq!(b.base.parameters(), a.base.parameters());
        assert_eq!(b.ewc, a.ewc);
        for seed in [0, 5, 11, 40] {
            let dag = generate(DagShape::BushyJoin, 20 + seed as usize, seed);
            let (pa, pb) = (a.pre_query(&dag).unwrap(), b.pre_query(&dag).unwrap());
            assert_eq!(pa.predicted_latency_ms, pb.predicted_latency_ms);
            assert_eq!(pa.advice, pb.advice);
        }
        let ids = |e: &DagSonaEngine| e.reasoning_bank.patterns().iter().map(|p| p.id).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b), "pattern ids survive");
        // A pattern created after the restore gets a fresh id.
        let dag = generate(DagShape::VectorSearch, 60, 99);
        b.post_query(&dag, &ExecutionMetrics { latency_ms: 1.0, ..Default::default() }).unwrap();
        let max_a = ids(&a).into_iter().max().unwrap();
        assert!(ids(&b).into_iter().max().unwrap() > max_a);
    }

    #[test]
    fn bad_blobs_are_refused_and_change_nothing() {
        let a = trained();
        let blob = a.save_state();
        let mut b = DagSonaEngine::new(SonaConfig::default());
        let before = b.save_state();
        let mut corrupt = blob.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xFF;
        let mut version = blob.clone();
        version[4] = 99;
        let cases: Vec<(&[u8], &str)> = vec![
            (b"", "bad magic"),
            (b"PNG\x00xxxxxxxxxx", "bad magic"),
            (&blob[..blob.len() / 2], "checksum"),
            (&corrupt, "checksum"),
            (&version, "format version 99"),
        ];
        for (bytes, want) in cases {
            let err = b.restore_state(bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
            assert_eq!(b.save_state(), before);
        }
        let mut other = DagSonaEngine::new(SonaConfig { dim: 128, ..SonaConfig::default() });
        let err = other.restore_state(&blob).unwrap_err().to_string();
        assert!(err.contains("(256, 2, 8)") && err.contains("(128, 2, 8)"), "{err}");
        // from_state adopts the saved shape instead.
        let (shaped, restored) =
            DagSonaEngine::from_state(SonaConfig { dim: 128, base_rank: 4, ..SonaConfig::default() }, &blob).unwrap();
        assert_eq!((shaped.config.dim, shaped.base.rank()), (256, 8));
        assert_eq!(restored.patterns, a.reasoning_bank.len());
        assert!(DagSonaEngine::from_state(SonaConfig::default(), &corrupt).is_err());
    }
}
