//! Near-duplicate detection with MinHash and locality-sensitive hashing (Broder, 1997;
//! Leskovec et al., *Mining of Massive Datasets*, ch. 3), with datatrove's defaults:
//! 5-gram shingles, 14 bands × 8 rows = 112 hashes, permutations `(a·x + b) mod p` over
//! the Mersenne prime p = 2⁶¹ − 1.
//!
//! Unlike datatrove, which takes every band collision as a duplicate, a candidate found
//! through a band is checked: it is a duplicate when the share of equal MinHash values
//! (the estimated Jaccard similarity of the two shingle sets) reaches the threshold.
//! The index keeps 32 bits of each MinHash value of every *kept* document (448 bytes
//! per document with the defaults) and one bucket entry per band — never the texts.
//!
//! Everything is deterministic: shingles are hashed with FNV-1a and a fixed finaliser,
//! and the permutations come from SplitMix64 on the configured seed, so a seed gives
//! the same result on every run and machine.

use std::collections::HashMap;

/// The Mersenne prime 2⁶¹ − 1.
const P: u64 = (1 << 61) - 1;
/// No document (end of a bucket chain).
const NONE: u32 = u32::MAX;

/// How shingles are made from a document.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shingling {
    /// Words (or characters) per shingle.
    pub ngram: usize,
    /// Below this share of whitespace among the characters, shingle characters.
    pub char_below_space_ratio: f64,
}

/// Computes MinHash signatures: `bands × rows` values per document.
#[derive(Debug, Clone)]
pub struct MinHasher {
    shingling: Shingling,
    /// `(a, b)` of each permutation, `1 ≤ a < p`, `0 ≤ b < p`.
    perms: Vec<(u64, u64)>,
}

impl MinHasher {
    /// `hashes` permutations drawn from `seed`.
    pub fn new(shingling: Shingling, hashes: usize, seed: u64) -> Self {
        let mut state = seed;
        let perms = (0..hashes)
            .map(|_| {
                let a = 1 + splitmix64(&mut state) % (P - 1);
                let b = splitmix64(&mut state) % P;
                (a, b)
            })
            .collect();
        Self { shingling, perms }
    }

    /// Number of values in a signature.
    pub fn len(&self) -> usize {
        self.perms.len()
    }

    /// Whether signatures are empty (no permutations).
    pub fn is_empty(&self) -> bool {
        self.perms.is_empty()
    }

    /// The signature of `text` (best given normalised: lower case, NFKC), or `None`
    /// when it has no letters or digits. Punctuation separates words and is not part
    /// of any shingle.
    pub fn signature(&self, text: &str) -> Option<Vec<u32>> {
        let mut mins = vec![u64::MAX; self.perms.len()];
        let mut any = false;
        let mut add = |h: u64| {
            any = true;
            let x = reduce(h);
            for (m, &(a, b)) in mins.iter_mut().zip(&self.perms) {
                let v = mod_p(a as u128 * x as u128 + b as u128);
                if v < *m {
                    *m = v;
                }
            }
        };
        let n = self.shingling.ngram.max(1);
        if self.by_chars(text) {
            let chars: Vec<char> = text.chars().filter(|c| c.is_alphanumeric()).collect();
            for gram in windows(&chars, n) {
                add(hash_chars(gram));
            }
        } else {
            let words: Vec<&str> = text
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .collect();
            for gram in windows(&words, n) {
                add(hash_words(gram));
            }
        }
        any.then(|| mins.into_iter().map(|m| m as u32).collect())
    }

    /// Whether `text` is shingled by characters: few spaces for its length.
    fn by_chars(&self, text: &str) -> bool {
        let (mut spaces, mut chars) = (0usize, 0usize);
        for c in text.chars() {
            chars += 1;
            spaces += usize::from(c.is_whitespace());
        }
        (spaces as f64) < self.shingling.char_below_space_ratio * chars as f64
    }
}

/// Every run of `n` items, or the whole slice as one shingle when it is shorter.
fn windows<T>(items: &[T], n: usize) -> impl Iterator<Item = &[T]> {
    let short = (!items.is_empty() && items.len() < n).then_some(items);
    items.windows(n).chain(short)
}

/// FNV-1a over bytes, continuing from `h`.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// MurmurHash3's 64-bit finaliser: spreads FNV's weak low bits over the whole word.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn hash_words(words: &[&str]) -> u64 {
    // 0xFF never occurs in UTF-8, so ["ab", "c"] and ["a", "bc"] differ.
    let h = words
        .iter()
        .fold(FNV_OFFSET, |h, w| fnv(fnv(h, w.as_bytes()), &[0xFF]));
    fmix64(h)
}

fn hash_chars(chars: &[char]) -> u64 {
    let mut buf = [0u8; 4];
    let h = chars.iter().fold(FNV_OFFSET, |h, c| {
        fnv(h, c.encode_utf8(&mut buf).as_bytes())
    });
    fmix64(h)
}

/// A stable 64-bit hash of a string (FNV-1a, then MurmurHash3's finaliser); the
/// quality rules use it to count repeated lines and n-grams.
pub(crate) fn hash_str(s: &str) -> u64 {
    fmix64(fnv(FNV_OFFSET, s.as_bytes()))
}

/// A stable 64-bit hash of a sequence of 64-bit hashes (word n-grams): one multiply
/// per value, since the values are already well mixed.
pub(crate) fn hash_u64s(values: &[u64]) -> u64 {
    let h = values.iter().fold(FNV_OFFSET, |h, &v| {
        (h ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29)
    });
    fmix64(h)
}

/// A stable 64-bit hash of 32-bit values (LSH band keys).
fn hash_u32s(values: &[u32]) -> u64 {
    fmix64(
        values
            .iter()
            .fold(FNV_OFFSET, |h, v| fnv(h, &v.to_le_bytes())),
    )
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `x mod p` for a 64-bit `x`.
fn reduce(x: u64) -> u64 {
    mod_p(u128::from(x))
}

/// `x mod p` for `x < 2¹²²` (a product of two values below p, plus one); branch-free
/// so the loop over permutations stays tight.
#[inline]
fn mod_p(x: u128) -> u64 {
    let lo = (x as u64) & P;
    let hi = (x >> 61) as u64;
    // lo ≤ p and hi < 2⁶¹, so r ≤ 2p: at most two subtractions of p.
    let r = lo + hi;
    let r = r.min(r.wrapping_sub(P));
    r.min(r.wrapping_sub(P))
}

/// The LSH index of kept documents: for each band, bucket key → the newest document
/// with that key, chained to older ones.
#[derive(Debug)]
pub struct LshIndex {
    bands: usize,
    rows: usize,
    threshold: f64,
    heads: Vec<HashMap<u64, u32>>,
    /// `next[doc * bands + band]`: the previous document in that band's bucket.
    next: Vec<u32>,
    /// `bands × rows` values per kept document.
    signatures: Vec<u32>,
}

impl LshIndex {
    /// An empty index; `threshold` 0 takes every band collision as a duplicate.
    pub fn new(bands: usize, rows: usize, threshold: f64) -> Self {
        Self {
            bands,
            rows,
            threshold,
            heads: vec![HashMap::new(); bands],
            next: Vec::new(),
            signatures: Vec::new(),
        }
    }

    /// Kept documents so far.
    pub fn len(&self) -> usize {
        self.next.len() / self.bands.max(1)
    }

    /// Whether no document was kept yet.
    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }

    fn key(&self, sig: &[u32], band: usize) -> u64 {
        hash_u32s(&sig[band * self.rows..(band + 1) * self.rows])
    }

    fn signature(&self, doc: u32) -> &[u32] {
        let n = self.bands * self.rows;
        &self.signatures[doc as usize * n..(doc as usize + 1) * n]
    }

    /// The estimated Jaccard similarity of two signatures.
    pub fn similarity(a: &[u32], b: &[u32]) -> f64 {
        let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
        same as f64 / a.len().max(1) as f64
    }

    /// The first kept document (in band order, newest first within a bucket) that `sig`
    /// is a near duplicate of, with the estimated similarity.
    pub fn find(&self, sig: &[u32]) -> Option<(u32, f64)> {
        let mut checked: Vec<u32> = Vec::new();
        for band in 0..self.bands {
            let mut doc = self.heads[band]
                .get(&self.key(sig, band))
                .copied()
                .unwrap_or(NONE);
            while doc != NONE {
                if !checked.contains(&doc) {
                    checked.push(doc);
                    let s = Self::similarity(sig, self.signature(doc));
                    if s >= self.threshold {
                        return Some((doc, s));
                    }
                }
                doc = self.next[doc as usize * self.bands + band];
            }
        }
        None
    }

    /// Adds a kept document's signature (of `bands × rows` values).
    pub fn insert(&mut self, sig: &[u32]) {
        debug_assert_eq!(sig.len(), self.bands * self.rows);
        let doc = self.len() as u32;
        for band in 0..self.bands {
            let key = self.key(sig, band);
            let prev = self.heads[band].insert(key, doc).unwrap_or(NONE);
            self.next.push(prev);
        }
        self.signatures.extend_from_slice(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> MinHasher {
        let s = Shingling {
            ngram: 5,
            char_below_space_ratio: 0.05,
        };
        MinHasher::new(s, 112, 1)
    }

    #[test]
    fn mod_p_matches_u128_remainder() {
        let mut state = 7;
        for _ in 0..1000 {
            let a = splitmix64(&mut state) % P;
            let x = splitmix64(&mut state) % P;
            let b = splitmix64(&mut state) % P;
            let v = a as u128 * x as u128 + b as u128;
            assert_eq!(u128::from(mod_p(v)), v % u128::from(P));
        }
        assert_eq!(mod_p(u128::from(P)), 0);
        assert_eq!(reduce(u64::MAX), u64::MAX % P);
    }

    #[test]
    fn signatures_are_stable_and_estimate_jaccard() {
        let h = hasher();
        let a = "one two three four five six seven eight nine ten eleven twelve";
        let sig = h.signature(a).unwrap();
        // Golden values, the same on every machine: a change here changes every dedup
        // result, so it must be deliberate.
        assert_eq!(sig[..4], [1349594122, 1612897723, 3526417519, 911365003]);
        assert_eq!(sig, h.signature(a).unwrap());
        assert_eq!(sig.len(), 112);
        assert_eq!(LshIndex::similarity(&sig, &sig), 1.0);
        // 8 shingles each, 7 shared: Jaccard 7/9.
        let b = "one two three four five six seven eight nine ten eleven dozen";
        let b_sig = h.signature(b).unwrap();
        let est = LshIndex::similarity(&sig, &b_sig);
        assert!((est - 7.0 / 9.0).abs() < 0.15, "{est}");
        assert!(h.signature("  ...  ").is_none());
        assert!(h.signature("ab").is_some());
    }

    #[test]
    fn japanese_is_shingled_by_characters() {
        let h = hasher();
        assert!(h.by_chars("吾輩は猫である。名前はまだ無い。"));
        assert!(!h.by_chars("the cat sat on the mat"));
        let a = h
            .signature("吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。")
            .unwrap();
        let b = h
            .signature("吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかない。")
            .unwrap();
        assert!(LshIndex::similarity(&a, &b) > 0.75);
    }

    #[test]
    fn the_index_finds_near_duplicates_of_kept_documents_only() {
        let h = hasher();
        let mut index = LshIndex::new(14, 8, 0.8);
        let base: Vec<String> = (0..200).map(|i| format!("w{i}")).collect();
        let a = base.join(" ");
        let mut near = base.clone();
        near[100] = "changed".into();
        let other: Vec<String> = (0..200).map(|i| format!("v{i}")).collect();
        let sig_a = h.signature(&a).unwrap();
        assert!(index.find(&sig_a).is_none());
        index.insert(&sig_a);
        assert_eq!(index.len(), 1);
        let (doc, s) = index.find(&h.signature(&near.join(" ")).unwrap()).unwrap();
        assert_eq!(doc, 0);
        assert!(s >= 0.8, "{s}");
        assert!(
            index
                .find(&h.signature(&other.join(" ")).unwrap())
                .is_none()
        );
    }
}
