//! Acting on the planner: setting arms, the shared steering table the planner hook consults, and the shared
//! table of replayable query texts the learner explores with.
//!
//! - An **arm** is a set of planner settings ([`ARMS`]; arm 0 is the native plan). Only settings that act at
//!   planning time are used, so restoring them after planning leaves execution untouched.
//! - The **steering table** maps a query class (the query id `pg_stat_statements` shows) to the arm its plans
//!   are made under. Only the learner worker writes arms into it, after measuring that the arm beats the native
//!   plan (see [`crate::learner`]); the planner hook reads it lock-free. The per-class kill switch
//!   (`dag_class_enable`) sets a disabled flag that the worker then respects.
//! - The **text table** holds, per query class, the text of one executed statement that can be replayed: a
//!   plain read-only `SELECT` without parameters. Backends write it when they first meet a plan shape; the worker
//!   reads it to replay the class under candidate arms in the background. Backends also write the text of each
//!   new *variant* (other parameter values, see [`crate::hooks`]) of a steered class they meet: the worker checks
//!   that the arm holds for it.
//! - The **variant table** lists, for classes whose arm was seen to lose on some variant (*parameter-sensitive*
//!   ones, a flag in the steering table), the variants checked to run faster under the arm: only those are
//!   steered, every other variant of the class is planned natively.

use pgrx::pg_sys;
use std::ffi::CStr;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// The setting arms explored, in a fixed order (the index is stored in trajectory records and the steering table).
/// C strings: the planner hook passes them to `set_config_option` without allocating.
pub(crate) const ARMS: [&[(&CStr, &CStr)]; 11] = [
    &[],
    &[(c"enable_nestloop", c"off")],
    &[(c"enable_hashjoin", c"off")],
    &[(c"enable_mergejoin", c"off")],
    &[(c"enable_seqscan", c"off")],
    &[(c"enable_indexscan", c"off")],
    &[(c"enable_bitmapscan", c"off")],
    &[(c"max_parallel_workers_per_gather", c"0")],
    &[(c"enable_nestloop", c"off"), (c"enable_mergejoin", c"off")],
    &[(c"enable_indexscan", c"off"), (c"enable_indexonlyscan", c"off"), (c"enable_bitmapscan", c"off")],
    &[(c"enable_hashjoin", c"off"), (c"enable_mergejoin", c"off")],
];

/// Settings of arm `arm` as owned pairs (what the ReasoningBank stores), sorted by name.
pub(crate) fn arm_settings(arm: usize) -> Vec<(String, String)> {
    let mut s: Vec<(String, String)> =
        ARMS.get(arm).copied().unwrap_or(&[]).iter().map(|(k, v)| (text(k).to_owned(), text(v).to_owned())).collect();
    s.sort();
    s
}

/// `name=value,name=value` of arm `arm` ("native" for arm 0).
pub(crate) fn arm_label(arm: usize) -> String {
    match ARMS.get(arm) {
        Some([]) | None => "native".to_owned(),
        Some(settings) => {
            settings.iter().map(|(k, v)| format!("{}={}", text(k), text(v))).collect::<Vec<_>>().join(",")
        }
    }
}

/// A setting name or value of [`ARMS`] as text (they are ASCII).
pub(crate) fn text(s: &CStr) -> &str {
    s.to_str().expect("ARMS are ASCII")
}

/// The arm whose label is `label`.
pub(crate) fn arm_by_label(label: &str) -> Option<usize> {
    (0..ARMS.len()).find(|&a| arm_label(a) == label.replace(' ', ""))
}

// ---- shared memory --------------------------------------------------------------------------------------------

/// Slots of the steering table (open addressing by query id).
const STEER_SLOTS: usize = 4096;
/// Slots of the text table (direct-mapped by query id) and bytes per text.
const TEXT_SLOTS: usize = 1024;
/// 8 KB: all but one of TPC-DS's 99 queries fit (4 000 left out 7 of them, one with a 19 KB `IN` list).
pub(crate) const TEXT_BYTES: usize = 8192 - 40;

#[repr(C)]
struct SteerSlot {
    /// 0 = empty.
    query_id: AtomicU64,
    /// Low 8 bits: the arm (0 = native); bit 8: disabled by the kill switch.
    state: AtomicU32,
    /// Why (for EXPLAIN): the arm's replayed latency as a fraction of native (f32 bits); NaN when forced.
    ratio: AtomicU32,
}

const DISABLED: u32 = 1 << 8;
/// The class's arm lost on some variant: only the variants in the variant table are steered.
const SENSITIVE: u32 = 1 << 9;

/// Slots of the variant table (open addressing by class and variant).
const VARIANT_SLOTS: usize = 8192;
/// A removed entry of the variant table (tags are odd).
const TOMBSTONE: u64 = 2;

#[repr(C)]
struct TextSlot {
    /// Seqlock: odd while written.
    seq: AtomicU64,
    query_id: u64,
    /// The variant the text is of (0: unknown).
    variant: u64,
    db_id: u32,
    user_id: u32,
    len: u32,
    text: [u8; TEXT_BYTES],
}

#[repr(C)]
struct Shared {
    steer: [SteerSlot; STEER_SLOTS],
    texts: [TextSlot; TEXT_SLOTS],
    /// [`variant_tag`]s of the checked variants of parameter-sensitive classes; 0 = empty. Only the worker writes.
    variants: [AtomicU64; VARIANT_SLOTS],
}

static SHARED: AtomicPtr<Shared> = AtomicPtr::new(ptr::null_mut());
const NAME: &CStr = c"ruvector_dag steering";

/// Bytes of shared memory needed.
pub(crate) fn shmem_size() -> usize {
    size_of::<Shared>()
}

/// Creates or attaches the tables.
///
/// # Safety
/// Call only from the shared-memory startup hook, under `AddinShmemInitLock`.
pub(crate) unsafe fn attach() {
    // SAFETY: the caller holds AddinShmemInitLock; a new area is zeroed, which is the empty state of both tables.
    unsafe {
        let mut found = false;
        let shared = pg_sys::ShmemInitStruct(NAME.as_ptr(), shmem_size(), &mut found).cast::<Shared>();
        if !found {
            ptr::write_bytes(shared.cast::<u8>(), 0, shmem_size());
        }
        SHARED.store(shared, Ordering::Release);
    }
}

fn shared() -> Option<&'static Shared> {
    // SAFETY: the area lives in shared memory for the server's lifetime; mutable fields are atomics or guarded by
    // the text slots' seqlocks.
    unsafe { SHARED.load(Ordering::Acquire).as_ref() }
}

fn probe(query_id: u64) -> impl Iterator<Item = usize> {
    let start = (query_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize % STEER_SLOTS;
    (0..STEER_SLOTS).map(move |i| (start + i) % STEER_SLOTS)
}

/// The slot of class `query_id`, if the steering table has one.
fn find(query_id: u64) -> Option<&'static SteerSlot> {
    let s = shared()?;
    for i in probe(query_id).take(16) {
        let slot = &s.steer[i];
        match slot.query_id.load(Ordering::Acquire) {
            0 => return None,
            q if q == query_id => return Some(slot),
            _ => {}
        }
    }
    None
}

/// The arm plans of class `query_id` are made under (0 = native: unknown, not steered or disabled).
pub(crate) fn lookup(query_id: u64) -> usize {
    if query_id == 0 {
        return 0;
    }
    let Some(slot) = find(query_id) else { return 0 };
    let state = slot.state.load(Ordering::Acquire);
    if state & DISABLED != 0 { 0 } else { (state & 0xFF) as usize }
}

fn slot_for(s: &Shared, query_id: u64) -> Option<&SteerSlot> {
    for i in probe(query_id).take(16) {
        let slot = &s.steer[i];
        let q = slot.query_id.load(Ordering::Acquire);
        if q == query_id {
            return Some(slot);
        }
        if q == 0 {
            // Claim the empty slot (the worker and kill-switch callers may race for it).
            match slot.query_id.compare_exchange(0, query_id, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(slot),
                Err(other) if other == query_id => return Some(slot),
                Err(_) => continue,
            }
        }
    }
    None
}

/// Sets class `query_id`'s arm and why (`ratio`: replayed latency under the arm over native; NaN when an
/// operator forced it), and whether only its checked variants are steered (`sensitive`, see [`publish_variants`]);
/// keeps the disabled flag. Returns false when the table is full.
pub(crate) fn publish(query_id: u64, arm: usize, ratio: f32, sensitive: bool) -> bool {
    let Some(s) = shared() else { return false };
    let Some(slot) = slot_for(s, query_id) else { return false };
    slot.ratio.store(ratio.to_bits(), Ordering::Release);
    let sensitive = if sensitive { SENSITIVE } else { 0 };
    // A compare-and-swap: a kill switch flipped by a backend between reading and writing the state is kept (a plain
    // store could set a flag that was just cleared, leaving the class disabled for good).
    let _ = slot.state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
        let new = (old & DISABLED) | sensitive | (arm as u32 & 0xFF);
        (old != new).then_some(new)
    });
    true
}

/// Whether only the checked variants of class `query_id` are steered (its arm lost on some variant).
pub(crate) fn sensitive(query_id: u64) -> bool {
    find(query_id).is_some_and(|slot| slot.state.load(Ordering::Acquire) & SENSITIVE != 0)
}

/// The variant table's tag of variant `variant` of class `query_id` (never 0).
pub(crate) fn variant_tag(query_id: u64, variant: u64) -> u64 {
    (query_id.rotate_left(29) ^ variant.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1
}

fn variant_probe(tag: u64) -> impl Iterator<Item = usize> {
    let start = (tag >> 32) as usize % VARIANT_SLOTS;
    (0..16).map(move |i| (start + i) % VARIANT_SLOTS)
}

/// Whether variant `variant` of class `query_id` was checked to run faster under the class's arm.
pub(crate) fn variant_steered(query_id: u64, variant: u64) -> bool {
    let Some(s) = shared() else { return false };
    variant != 0 && variant_steered_tag(s, variant_tag(query_id, variant))
}

fn variant_steered_tag(s: &Shared, tag: u64) -> bool {
    for i in variant_probe(tag) {
        match s.variants[i].load(Ordering::Acquire) {
            0 => return false,
            t if t == tag => return true,
            _ => {}
        }
    }
    false
}

/// Makes the variant table hold exactly `variants` (class, variant): the worker, its only writer, after a change.
/// New entries go in before old ones go (as tombstones, so that probing continues past them): a backend planning
/// meanwhile never misses a variant that stays. When the tombstones leave no room, the table is rebuilt, and a
/// backend planning during that may plan a variant natively once: the safe side. Returns how many did not fit.
pub(crate) fn publish_variants(variants: &[(u64, u64)]) -> usize {
    let Some(s) = shared() else { return variants.len() };
    let insert = |tag: u64| {
        let at = variant_probe(tag).find(|&i| {
            let t = s.variants[i].load(Ordering::Acquire);
            t == tag || t == 0 || t == TOMBSTONE
        });
        at.map(|i| s.variants[i].store(tag, Ordering::Release)).is_some()
    };
    let tags: rustc_hash::FxHashSet<u64> = variants.iter().map(|&(q, v)| variant_tag(q, v)).collect();
    let fit = tags.iter().all(|&tag| variant_steered_tag(s, tag) || insert(tag));
    for slot in &s.variants {
        let t = slot.load(Ordering::Acquire);
        if t != 0 && t != TOMBSTONE && !tags.contains(&t) {
            slot.store(TOMBSTONE, Ordering::Release);
        }
    }
    if fit {
        return 0;
    }
    for slot in &s.variants {
        slot.store(0, Ordering::Release);
    }
    tags.iter().filter(|&&tag| !insert(tag)).count()
}

/// Turns steering of class `query_id` off (`enabled = false`) or back on. Returns false without shared memory or
/// when the table is full.
pub(crate) fn set_enabled(query_id: u64, enabled: bool) -> bool {
    let Some(s) = shared() else { return false };
    let Some(slot) = slot_for(s, query_id) else { return false };
    if enabled {
        slot.state.fetch_and(!DISABLED, Ordering::AcqRel);
    } else {
        slot.state.fetch_or(DISABLED, Ordering::AcqRel);
    }
    true
}

/// Why class `query_id` is steered: its arm's replayed latency over native (NaN when forced by an operator).
pub(crate) fn ratio(query_id: u64) -> f32 {
    find(query_id).map_or(f32::NAN, |slot| f32::from_bits(slot.ratio.load(Ordering::Acquire)))
}

/// Whether class `query_id` is disabled by the kill switch.
pub(crate) fn disabled(query_id: u64) -> bool {
    find(query_id).is_some_and(|slot| slot.state.load(Ordering::Acquire) & DISABLED != 0)
}

/// A replayable statement of a class.
#[derive(Debug, Clone)]
pub(crate) struct QueryText {
    /// The variant it is of (0: unknown).
    pub(crate) variant: u64,
    pub(crate) db_id: u32,
    pub(crate) user_id: u32,
    pub(crate) text: String,
}

/// Stores the text of class `query_id` (a backend, when it first meets a plan shape). Texts longer than
/// [`TEXT_BYTES`] are not stored; a slot being written by another backend is left alone.
pub(crate) fn store_text(query_id: u64, variant: u64, db_id: u32, user_id: u32, text: &str) {
    let Some(s) = shared() else { return };
    if text.len() > TEXT_BYTES || query_id == 0 {
        return;
    }
    let slot = &s.texts[query_id as usize % TEXT_SLOTS];
    let seq = slot.seq.load(Ordering::Acquire);
    if seq % 2 == 1 || slot.seq.compare_exchange(seq, seq + 1, Ordering::AcqRel, Ordering::Relaxed).is_err() {
        return;
    }
    let raw = (slot as *const TextSlot).cast_mut();
    // SAFETY: this writer owns the slot while its sequence number is odd; readers validate the sequence.
    unsafe {
        (*raw).query_id = query_id;
        (*raw).variant = variant;
        (*raw).db_id = db_id;
        (*raw).user_id = user_id;
        (*raw).len = text.len() as u32;
        ptr::copy_nonoverlapping(text.as_ptr(), (&raw mut (*raw).text).cast::<u8>(), text.len());
    }
    slot.seq.store(seq + 2, Ordering::Release);
}

/// The stored text of class `query_id`, if its slot holds it (of variant `variant`, when given).
pub(crate) fn fetch_text(query_id: u64, variant: Option<u64>) -> Option<QueryText> {
    let s = shared()?;
    let slot = &s.texts[query_id as usize % TEXT_SLOTS];
    let (_, (q, stored, db_id, user_id, bytes)) = crate::shmem::seqlock_read(&slot.seq, 10, || {
        // SAFETY: a copy validated by the sequence number (seqlock read).
        unsafe {
            let raw = slot as *const TextSlot;
            let len = ((*raw).len as usize).min(TEXT_BYTES);
            let mut bytes = vec![0u8; len];
            ptr::copy_nonoverlapping((&raw const (*raw).text).cast::<u8>(), bytes.as_mut_ptr(), len);
            ((*raw).query_id, (*raw).variant, (*raw).db_id, (*raw).user_id, bytes)
        }
    })?;
    if q != query_id || bytes.is_empty() || variant.is_some_and(|v| v != stored) {
        return None;
    }
    String::from_utf8(bytes).ok().map(|text| QueryText { variant: stored, db_id, user_id, text })
}

// ---- planning under an arm ----------------------------------------------------------------------------------

/// Applies arm `arm`'s settings at a new GUC nest level; the returned level must be passed to [`restore`] after
/// planning (an error in between is undone by the transaction's abort, as for `SET LOCAL`).
pub(crate) fn apply(arm: usize) -> i32 {
    // SAFETY: NewGUCNestLevel/set_config_option are PostgreSQL's documented way to change settings temporarily
    // (as a function's SET clause does); names and values are constants of ARMS.
    unsafe {
        let level = pg_sys::NewGUCNestLevel();
        for (name, value) in ARMS.get(arm).copied().unwrap_or(&[]) {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        level
    }
}

/// Restores the settings saved by [`apply`].
pub(crate) fn restore(level: i32) {
    // SAFETY: pops exactly the nest level `apply` pushed.
    unsafe { pg_sys::AtEOXact_GUC(true, level) };
}
