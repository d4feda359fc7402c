//! Task metrics with the semantics of the libraries people compare with: accuracy and
//! macro-F1 (scikit-learn, `zero_division=0`), Pearson and Spearman correlation (SciPy,
//! average ranks for ties), entity-level precision / recall / F1 over BIO tags (seqeval,
//! default conlleval mode and strict IOB2 mode), and ROUGE-1/2/L (rouge-score, its default
//! tokenizer or characters for Japanese). Checked against those libraries on committed
//! fixtures (`scripts/metric_fixtures.py`, `tests/metrics.rs`).

use std::collections::{BTreeSet, HashMap};

/// Share of equal labels.
pub fn accuracy(gold: &[usize], pred: &[usize]) -> f64 {
    let n = gold.len().min(pred.len());
    gold.iter().zip(pred).filter(|(a, b)| a == b).count() as f64 / n.max(1) as f64
}

/// Unweighted mean of per-label F1 over every label in `gold` or `pred`.
pub fn macro_f1(gold: &[usize], pred: &[usize]) -> f64 {
    let labels: BTreeSet<usize> = gold.iter().chain(pred).copied().collect();
    let f1s: Vec<f64> = labels
        .iter()
        .map(|&l| {
            let (mut tp, mut fp, mut fneg) = (0usize, 0usize, 0usize);
            for (&g, &p) in gold.iter().zip(pred) {
                match (g == l, p == l) {
                    (true, true) => tp += 1,
                    (false, true) => fp += 1,
                    (true, false) => fneg += 1,
                    _ => {}
                }
            }
            let denom = 2 * tp + fp + fneg;
            if denom == 0 {
                0.0
            } else {
                2.0 * tp as f64 / denom as f64
            }
        })
        .collect();
    f1s.iter().sum::<f64>() / f1s.len().max(1) as f64
}

/// Pearson's correlation coefficient.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len()) as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    sxy / (sxx * syy).sqrt()
}

/// Ranks from 1, ties sharing their average rank.
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[idx[k]] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation (Pearson of average ranks).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

/// How BIO sequences are read into entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityMode {
    /// seqeval's default (conlleval): an `I-X` without a `B-X` still starts an entity.
    Default,
    /// seqeval's strict IOB2: only `B-X (I-X)*` is an entity; stray `I-` tags are dropped.
    Strict,
}

fn split(tag: &str) -> (char, &str) {
    match tag.split_once('-') {
        Some((p, t)) => (p.chars().next().unwrap_or('O'), t),
        None => (tag.chars().next().unwrap_or('O'), ""),
    }
}

/// Entities `(type, start, end exclusive)` of one tagged sentence.
pub fn entities(tags: &[&str], mode: EntityMode) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    match mode {
        EntityMode::Strict => {
            let mut cur: Option<(String, usize)> = None;
            for (i, t) in tags.iter().enumerate() {
                let (p, ty) = split(t);
                match p {
                    'B' => {
                        if let Some((c, s)) = cur.take() {
                            out.push((c, s, i));
                        }
                        cur = Some((ty.to_string(), i));
                    }
                    'I' if cur.as_ref().is_some_and(|(c, _)| c == ty) => {}
                    _ => {
                        if let Some((c, s)) = cur.take() {
                            out.push((c, s, i));
                        }
                    }
                }
            }
            if let Some((c, s)) = cur {
                out.push((c, s, tags.len()));
            }
        }
        EntityMode::Default => {
            // conlleval's chunk boundaries, as seqeval's get_entities applies them.
            let (mut prev_p, mut prev_t) = ('O', String::new());
            let mut begin = 0;
            for (i, t) in tags.iter().chain(std::iter::once(&"O")).enumerate() {
                let (p, ty) = split(t);
                let ends = matches!(prev_p, 'E' | 'S')
                    || (matches!(prev_p, 'B' | 'I') && matches!(p, 'B' | 'S' | 'O'))
                    || (prev_p != 'O' && prev_t != ty);
                if ends {
                    out.push((prev_t.clone(), begin, i));
                }
                let starts = matches!(p, 'B' | 'S')
                    || (matches!(prev_p, 'E' | 'S' | 'O') && matches!(p, 'E' | 'I'))
                    || (p != 'O' && prev_t != ty);
                if starts {
                    begin = i;
                }
                prev_p = p;
                prev_t = ty.to_string();
            }
        }
    }
    out
}

/// Entity-level precision, recall and F1 over sentences.
pub fn entity_prf(gold: &[Vec<&str>], pred: &[Vec<&str>], mode: EntityMode) -> (f64, f64, f64) {
    let collect = |s: &[Vec<&str>]| -> BTreeSet<(usize, String, usize, usize)> {
        s.iter()
            .enumerate()
            .flat_map(|(k, tags)| {
                entities(tags, mode)
                    .into_iter()
                    .map(move |(t, a, b)| (k, t, a, b))
            })
            .collect()
    };
    let (g, p) = (collect(gold), collect(pred));
    let hit = g.intersection(&p).count() as f64;
    let precision = if p.is_empty() {
        0.0
    } else {
        hit / p.len() as f64
    };
    let recall = if g.is_empty() {
        0.0
    } else {
        hit / g.len() as f64
    };
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    (precision, recall, f1)
}

/// How ROUGE splits text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RougeTokens {
    /// rouge-score's default: lower-case, every run of `[a-z0-9]` is a token.
    Default,
    /// One token per non-space character (Japanese).
    Chars,
}

impl RougeTokens {
    /// `Chars` for text with letters outside ASCII (Japanese), which rouge-score's default
    /// tokenizer would drop entirely; `Default` otherwise.
    pub fn for_text(text: &str) -> Self {
        if text.chars().any(|c| c.is_alphanumeric() && !c.is_ascii()) {
            Self::Chars
        } else {
            Self::Default
        }
    }
}

/// Mean ROUGE-1, ROUGE-2 and ROUGE-L F1 of `(target, prediction)` pairs, each pair
/// tokenized by [`RougeTokens::for_text`] of its target.
pub fn rouge_f1(pairs: &[(&str, &str)]) -> [f64; 3] {
    let n = pairs.len().max(1) as f64;
    let mut sum = [0.0; 3];
    for (t, p) in pairs {
        let how = RougeTokens::for_text(t);
        sum[0] += rouge_n(t, p, 1, how).fmeasure;
        sum[1] += rouge_n(t, p, 2, how).fmeasure;
        sum[2] += rouge_l(t, p, how).fmeasure;
    }
    sum.map(|x| x / n)
}

/// The first sentence of `text` (up to and including the first `.`, `!`, `?` or `。`
/// that ends a sentence): the lead-1 summary baseline.
pub fn lead_sentence(text: &str) -> &str {
    let t = text.trim_start();
    let mut chars = t.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = i + c.len_utf8();
        match c {
            '。' | '！' | '？' => return &t[..end],
            '.' | '!' | '?' if chars.peek().is_none_or(|(_, n)| n.is_whitespace()) => {
                return &t[..end];
            }
            _ => {}
        }
    }
    t
}

/// Tokens as rouge-score makes them.
pub fn rouge_tokens(text: &str, how: RougeTokens) -> Vec<String> {
    match how {
        RougeTokens::Chars => text
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(String::from)
            .collect(),
        RougeTokens::Default => text
            .to_lowercase()
            .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    }
}

/// Precision, recall and F-measure of one ROUGE variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prf {
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F-measure.
    pub fmeasure: f64,
}

fn prf(hit: f64, pred: usize, target: usize) -> Prf {
    let precision = if pred == 0 { 0.0 } else { hit / pred as f64 };
    let recall = if target == 0 {
        0.0
    } else {
        hit / target as f64
    };
    let fmeasure = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    Prf {
        precision,
        recall,
        fmeasure,
    }
}

/// ROUGE-N of `prediction` against `target`.
pub fn rouge_n(target: &str, prediction: &str, n: usize, how: RougeTokens) -> Prf {
    let grams = |t: &[String]| -> HashMap<Vec<String>, usize> {
        let mut m = HashMap::new();
        for w in t.windows(n) {
            *m.entry(w.to_vec()).or_insert(0) += 1;
        }
        m
    };
    let (t, p) = (rouge_tokens(target, how), rouge_tokens(prediction, how));
    let (gt, gp) = (grams(&t), grams(&p));
    let hit: usize = gt
        .iter()
        .map(|(k, c)| (*c).min(gp.get(k).copied().unwrap_or(0)))
        .sum();
    prf(hit as f64, gp.values().sum(), gt.values().sum())
}

/// ROUGE-L (longest common subsequence) of `prediction` against `target`.
pub fn rouge_l(target: &str, prediction: &str, how: RougeTokens) -> Prf {
    let (t, p) = (rouge_tokens(target, how), rouge_tokens(prediction, how));
    let mut dp = vec![vec![0usize; p.len() + 1]; t.len() + 1];
    for i in 1..=t.len() {
        for j in 1..=p.len() {
            dp[i][j] = if t[i - 1] == p[j - 1] {
                dp[i - 1][j - 1] + 1
            } else {
                dp[i - 1][j].max(dp[i][j - 1])
            };
        }
    }
    prf(dp[t.len()][p.len()] as f64, p.len(), t.len())
}
