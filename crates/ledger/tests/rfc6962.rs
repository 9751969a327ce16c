//! The Merkle core checked against the published RFC 6962 test vectors (the Certificate
//! Transparency reference data, typed in here as data) and against the RFC's recursive
//! definitions, for every leaf of trees of many sizes.

use proptest::prelude::*;
use sealtrail_ledger::merkle::*;

fn h(text: &str) -> Hash {
    hex::decode(text)
        .expect("hex")
        .try_into()
        .expect("32 bytes")
}

fn hs(texts: &[&str]) -> Vec<Hash> {
    texts.iter().map(|t| h(t)).collect()
}

/// The reference entries.
const ENTRIES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// Roots of the trees of sizes 0..=8 over the reference entries.
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn reference_tree() -> MemoryTree {
    MemoryTree::from_leaves(
        ENTRIES
            .iter()
            .map(|e| leaf_hash(&hex::decode(e).expect("hex"))),
    )
}

#[test]
fn roots_match_the_reference_tree_heads() {
    let tree = reference_tree();
    for (size, root) in ROOTS.iter().enumerate() {
        assert_eq!(
            tree.root_at(size as u64).expect("root"),
            h(root),
            "size {size}"
        );
    }
    assert_eq!(tree.root(), h(ROOTS[8]));
    assert_eq!(empty_root(), h(ROOTS[0]));
}

#[test]
fn inclusion_proofs_match_the_reference() {
    let tree = reference_tree();
    let cases: [(u64, u64, &[&str]); 5] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (index, size, expected) in cases {
        let proof = inclusion_proof(&tree, index, size).expect("proof");
        assert_eq!(proof, hs(expected), "inclusion of {index} in {size}");
        let leaf = tree.node(0, index).expect("leaf");
        verify_inclusion(&leaf, index, size, &proof, &h(ROOTS[size as usize])).expect("verifies");
    }
}

#[test]
fn consistency_proofs_match_the_reference() {
    let tree = reference_tree();
    let cases: [(u64, u64, &[&str]); 4] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (old, new, expected) in cases {
        let proof = consistency_proof(&tree, old, new).expect("proof");
        assert_eq!(proof, hs(expected), "consistency {old} → {new}");
        verify_consistency(
            old,
            new,
            &h(ROOTS[old as usize]),
            &h(ROOTS[new as usize]),
            &proof,
        )
        .expect("verifies");
    }
}

/// MTH straight from the RFC's recursive definition: the oracle for everything else.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

fn leaves(n: u64, salt: u8) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(&[&i.to_be_bytes()[..], &[salt]].concat()))
        .collect()
}

#[test]
fn every_proof_of_every_small_tree_verifies_and_no_tampered_one_does() {
    for n in 1..=40u64 {
        let ls = leaves(n, 1);
        let tree = MemoryTree::from_leaves(ls.iter().copied());
        assert_eq!(tree.root(), mth(&ls), "root of {n}");
        for size in 1..=n {
            let root = mth(&ls[..size as usize]);
            assert_eq!(tree.root_at(size).expect("root"), root);
            for index in 0..size {
                let proof = inclusion_proof(&tree, index, size).expect("proof");
                verify_inclusion(&ls[index as usize], index, size, &proof, &root)
                    .expect("verifies");
                let mut bad = proof.clone();
                if let Some(first) = bad.first_mut() {
                    first[0] ^= 1;
                    assert!(
                        verify_inclusion(&ls[index as usize], index, size, &bad, &root).is_err()
                    );
                }
                let other = (index + 1) % size;
                if other != index {
                    assert!(
                        verify_inclusion(&ls[index as usize], other, size, &proof, &root).is_err()
                    );
                }
            }
            for old in 1..=size {
                let proof = consistency_proof(&tree, old, size).expect("proof");
                let old_root = mth(&ls[..old as usize]);
                verify_consistency(old, size, &old_root, &root, &proof).expect("verifies");
                if old < size {
                    let mut forged = old_root;
                    forged[31] ^= 1;
                    assert!(verify_consistency(old, size, &forged, &root, &proof).is_err());
                }
            }
        }
    }
}

#[test]
fn frontier_rebuilt_from_nodes_continues_the_same_tree() {
    let ls = leaves(1000, 2);
    let tree = MemoryTree::from_leaves(ls.iter().copied());
    for size in [0u64, 1, 2, 3, 7, 8, 9, 500, 511, 512, 999, 1000] {
        let mut frontier = Frontier::at(&tree, size).expect("frontier");
        assert_eq!(frontier.root(), mth(&ls[..size as usize]), "size {size}");
        for leaf in &ls[size as usize..] {
            frontier.push(*leaf, |_, _, _| {});
        }
        assert_eq!(frontier.root(), tree.root());
    }
}

#[test]
fn proofs_outside_the_tree_are_refused() {
    let tree = MemoryTree::from_leaves(leaves(5, 3));
    assert_eq!(
        inclusion_proof(&tree, 5, 5),
        Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
    );
    assert_eq!(
        consistency_proof(&tree, 0, 3),
        Err(ProofError::BadSizes { old: 0, new: 3 })
    );
    assert_eq!(
        consistency_proof(&tree, 4, 3),
        Err(ProofError::BadSizes { old: 4, new: 3 })
    );
    assert!(matches!(
        inclusion_proof(&tree, 0, 6),
        Err(ProofError::MissingNode { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Trees of random sizes up to 2 000: every leaf's inclusion proof, and the consistency
    /// proof from a random older size, verify against the RFC's own definition of the root.
    #[test]
    fn proofs_verify_for_every_leaf_of_random_trees(n in 1u64..=2000, salt in any::<u8>(), old_pick in any::<u64>()) {
        let ls = leaves(n, salt);
        let tree = MemoryTree::from_leaves(ls.iter().copied());
        let root = mth(&ls);
        prop_assert_eq!(tree.root(), root);
        for index in 0..n {
            let proof = inclusion_proof(&tree, index, n).expect("proof");
            prop_assert!(verify_inclusion(&ls[index as usize], index, n, &proof, &root).is_ok());
        }
        let old = old_pick % n + 1;
        let proof = consistency_proof(&tree, old, n).expect("proof");
        prop_assert!(verify_consistency(old, n, &mth(&ls[..old as usize]), &root, &proof).is_ok());
    }
}
