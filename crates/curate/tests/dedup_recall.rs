//! Exact and near-duplicate removal on a generated corpus with planted copies: 300
//! random documents (a fixed-seed generator over a Zipf-like vocabulary), 100 near
//! copies with one to three words changed, and 50 exact copies with case and spacing
//! changed, each placed somewhere after its original. Recall and precision must both
//! reach 0.95.

use manabi_curate::{CurateConfig, Deduper, Rule, normalize};

/// SplitMix64: a small fixed-seed generator, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A word index with a Zipf-like skew: frequent words are much more common.
    fn word(&mut self, vocab: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((vocab as f64).powf(u) as usize)
            .saturating_sub(1)
            .min(vocab - 1)
    }
}

fn vocabulary(rng: &mut Rng, n: usize) -> Vec<String> {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    (0..n)
        .map(|_| {
            let len = 2 + rng.below(8);
            (0..len)
                .map(|_| LETTERS[rng.below(LETTERS.len())] as char)
                .collect()
        })
        .collect()
}

/// (text, index of the original it copies, or `None` for an original).
fn corpus() -> Vec<(String, Option<usize>)> {
    let mut rng = Rng(2024);
    let vocab = vocabulary(&mut rng, 5000);
    let originals: Vec<Vec<String>> = (0..300)
        .map(|_| {
            let len = 250 + rng.below(150);
            (0..len)
                .map(|_| vocab[rng.word(vocab.len())].clone())
                .collect()
        })
        .collect();
    let mut docs: Vec<(String, Option<usize>)> =
        originals.iter().map(|w| (w.join(" "), None)).collect();
    for i in 0..150 {
        let of = rng.below(originals.len());
        let text = if i < 100 {
            let mut words = originals[of].clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(words.len());
                words[at] = vocab[rng.below(vocab.len())].clone();
            }
            words.join(" ")
        } else {
            // Same text once normalised: upper case and doubled spaces.
            originals[of].join("  ").to_uppercase()
        };
        // Somewhere after the original.
        let pos = position_of_original(&docs, &originals, of);
        let at = pos + 1 + rng.below(docs.len() - pos);
        docs.insert(at, (text, Some(of)));
    }
    docs
}

fn position_of_original(
    docs: &[(String, Option<usize>)],
    originals: &[Vec<String>],
    of: usize,
) -> usize {
    let text = originals[of].join(" ");
    docs.iter()
        .position(|(t, o)| o.is_none() && *t == text)
        .unwrap_or(0)
}

#[test]
fn planted_duplicates_are_found_with_high_recall_and_precision() {
    let docs = corpus();
    let mut dedup = Deduper::new(&CurateConfig::default());
    let (mut planted, mut found, mut removed) = (0usize, 0usize, 0usize);
    let mut exact_as_near = 0;
    for (i, (text, copy_of)) in docs.iter().enumerate() {
        let verdict = dedup.check_and_keep(&normalize(text));
        if verdict.is_some() {
            removed += 1;
        }
        if copy_of.is_some() {
            planted += 1;
            if verdict.is_some() {
                found += 1;
            }
            let exact = text.chars().any(|c| c.is_uppercase());
            if exact && verdict == Some(Rule::NearDedup) {
                exact_as_near += 1;
            }
        } else {
            assert_ne!(
                verdict,
                Some(Rule::ExactDedup),
                "original #{i} removed as a copy"
            );
        }
    }
    let recall = found as f64 / planted as f64;
    let precision = found as f64 / removed.max(1) as f64;
    eprintln!("planted {planted}, removed {removed}, recall {recall:.3}, precision {precision:.3}");
    assert_eq!(planted, 150);
    assert!(recall >= 0.95, "recall {recall:.3}");
    assert!(precision >= 0.95, "precision {precision:.3}");
    assert_eq!(
        exact_as_near, 0,
        "exact copies must be caught by exact_dedup"
    );
}

#[test]
fn a_higher_threshold_removes_fewer_near_copies() {
    let docs = corpus();
    let count = |threshold: f64| {
        let mut cfg = CurateConfig::default();
        cfg.near_dedup.threshold = threshold;
        let mut dedup = Deduper::new(&cfg);
        docs.iter()
            .filter(|(t, _)| dedup.check_and_keep(&normalize(t)) == Some(Rule::NearDedup))
            .count()
    };
    let (loose, strict) = (count(0.5), count(0.999));
    assert!(loose >= 95, "{loose}");
    assert!(strict < loose, "{strict} vs {loose}");
}
