//! The ledger core of sealtrail: the canonical encoding of an event ([`entry`]), how a tenant's
//! log is hashed into an append-only Merkle tree
//! (RFC 9162: SHA-256, `0x00` leaf prefix, `0x01` node prefix), how inclusion and consistency
//! proofs are made and checked, and the compact frontier that lets a writer extend the tree
//! and know its root without reading it back, and signed checkpoints ([`checkpoint`]).
//!
//! **Architecture Invariant:** this crate knows nothing of HTTP, storage or signing. A store
//! provides node hashes through [`NodeSource`]; verifiers need only hashes and sizes.

pub mod checkpoint;
pub mod entry;
pub mod merkle;
pub mod personal;
pub mod view;
pub mod walk;

pub use merkle::{
    Frontier, Hash, LeafHash, MemoryTree, NodeSource, ProofError, Root, consistency_proof,
    empty_root, inclusion_proof, leaf_hash, node_hash, range_root, verify_consistency,
    verify_inclusion,
};
