//! Exact minimum cuts over plan DAGs: where a plan's capacity is lowest, which operators are bottlenecks.
//!
//! This module is filled by the `[mincut]` work item (exact s-t min cut by tree dynamic programming and Dinic,
//! incremental updates with work counters, a local oracle, criticality and bottleneck reports). Attention
//! mechanisms that gate on cuts use it from here; nothing else in the framework depends on it yet.
