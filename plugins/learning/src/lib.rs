//! SONA learning tiers, each a `LearningTier` plugin registered with the framework.
