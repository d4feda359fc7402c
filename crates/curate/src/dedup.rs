//! Deduplication state: exact duplicates by a SHA-256 of the normalised text, near
//! duplicates by MinHash ([`crate::minhash`]). Only documents that are kept enter the
//! indexes, so the first occurrence is kept and later copies are removed; a document
//! removed by a quality rule never makes a later one a duplicate.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

use crate::config::CurateConfig;
use crate::minhash::{LshIndex, MinHasher, Shingling};
use crate::rules::Rule;

/// The first 128 bits of the SHA-256 of a normalised text (see [`crate::text::normalize`]).
pub fn exact_key(normalized: &str) -> [u8; 16] {
    let digest = Sha256::digest(normalized.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// The exact and near-duplicate indexes of the documents kept so far.
#[derive(Debug)]
pub struct Deduper {
    exact: Option<HashSet<[u8; 16]>>,
    near: Option<(MinHasher, LshIndex)>,
}

impl Deduper {
    /// Indexes for the rules `cfg` leaves on (`exact_dedup`, `near_dedup`).
    pub fn new(cfg: &CurateConfig) -> Self {
        let on = cfg.rule_set();
        let n = &cfg.near_dedup;
        let near = on.has(Rule::NearDedup).then(|| {
            let shingling = Shingling {
                ngram: n.ngram,
                char_below_space_ratio: n.char_shingles_below_space_ratio,
            };
            (
                MinHasher::new(shingling, n.bands * n.rows, n.seed),
                LshIndex::new(n.bands, n.rows, n.threshold),
            )
        });
        Self {
            exact: on.has(Rule::ExactDedup).then(HashSet::new),
            near,
        }
    }

    /// Whether near-duplicate removal is on (signatures are wanted).
    pub fn wants_signatures(&self) -> bool {
        self.near.is_some()
    }

    /// The MinHash signature of a normalised text; `None` when near-duplicate removal
    /// is off or the text has no letters or digits.
    pub fn signature(&self, normalized: &str) -> Option<Vec<u32>> {
        self.near.as_ref()?.0.signature(normalized)
    }

    /// Whether a kept document had the same normalised text.
    pub fn is_exact_duplicate(&self, key: &[u8; 16]) -> bool {
        self.exact.as_ref().is_some_and(|set| set.contains(key))
    }

    /// The kept document (by order among kept documents) that `sig` nearly duplicates,
    /// with the estimated Jaccard similarity.
    pub fn near_duplicate(&self, sig: Option<&[u32]>) -> Option<(u32, f64)> {
        self.near.as_ref()?.1.find(sig?)
    }

    /// Records a kept document.
    pub fn keep(&mut self, key: [u8; 16], sig: Option<&[u32]>) {
        if let Some(set) = self.exact.as_mut() {
            set.insert(key);
        }
        if let (Some((_, index)), Some(sig)) = (self.near.as_mut(), sig) {
            index.insert(sig);
        }
    }

    /// Checks a normalised text against the kept documents and keeps it when it is
    /// new: `Some(ExactDedup | NearDedup)` when it is a duplicate.
    pub fn check_and_keep(&mut self, normalized: &str) -> Option<Rule> {
        let key = exact_key(normalized);
        if self.is_exact_duplicate(&key) {
            return Some(Rule::ExactDedup);
        }
        let sig = self.signature(normalized);
        if self.near_duplicate(sig.as_deref()).is_some() {
            return Some(Rule::NearDedup);
        }
        self.keep(key, sig.as_deref());
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::normalize;

    #[test]
    fn exact_keys_are_stable_sha256_prefixes() {
        // SHA-256("abc") = ba7816bf 8f01cfea 414140de 5dae2223 …
        assert_eq!(
            exact_key("abc"),
            [
                0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
                0x22, 0x23
            ]
        );
    }

    #[test]
    fn the_first_copy_is_kept_and_case_or_width_do_not_matter() {
        let mut d = Deduper::new(&CurateConfig::default());
        let a = "The quick brown fox jumps over the lazy dog near the river bank today.";
        assert_eq!(d.check_and_keep(&normalize(a)), None);
        let b = "THE   quick brown ｆｏｘ jumps over the lazy dog near the river bank today.";
        assert_eq!(d.check_and_keep(&normalize(b)), Some(Rule::ExactDedup));
        let c = "The quick brown fox jumps over the lazy dog near the river bank today!!";
        assert_eq!(d.check_and_keep(&normalize(c)), Some(Rule::NearDedup));
    }

    #[test]
    fn disabled_dedup_keeps_everything() {
        let cfg = CurateConfig {
            disable: vec![Rule::ExactDedup, Rule::NearDedup],
            ..CurateConfig::default()
        };
        let mut d = Deduper::new(&cfg);
        assert!(!d.wants_signatures());
        for _ in 0..3 {
            assert_eq!(d.check_and_keep("same text"), None);
        }
    }
}
