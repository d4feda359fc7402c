//! Every quality rule fires on a document made to fail it (and passes every rule
//! before it), and stays quiet once disabled; clean English and Japanese documents
//! pass them all.

use manabi_curate::quality::{DocView, check};
use manabi_curate::{CurateConfig, Rule};

const CLEAN_EN: &str = "The village sits at the edge of a wide valley, where the river slows \
before it reaches the sea. Every spring the farmers repair the stone walls that the winter \
storms have broken, and the children carry lunch to the fields in small baskets. In the \
evenings people gather in the square to trade news about the harvest, the weather and the \
prices at the market in town. Visitors often remark on the quiet, which is broken only by \
church bells and the occasional passing truck. Most families have lived here for \
generations, and they are proud of the old mill that still grinds flour for the bakery.";

const CLEAN_JA: &str = "今朝はいつもより早く起きて、近くの公園まで散歩に出かけた。
空気はまだ冷たく、木々の葉には細かな露が光っていた。
池のほとりでは、年配の男性が静かに釣り糸を垂れていた。
私はベンチに腰を下ろし、しばらく水面に映る雲を眺めていた。
やがて子どもたちの声が聞こえ始め、公園は少しずつにぎやかになった。
帰り道にパン屋へ寄ると、焼きたての香りが店の外まで漂っていた。
店主は笑顔で、今日は新しい種類のパンを作ったのだと教えてくれた。
家に戻ってからそのパンを食べてみると、思ったよりも甘くて柔らかかった。
午後は窓を開けて本を読み、夕方には友人に手紙を書いた。
こうして何でもない一日が過ぎていくことを、私はありがたく思っている。
明日もまた同じ道を歩き、違う景色を見つけられたらうれしい。
夜になると風が強くなり、庭の木がさらさらと音を立て始めた。
寝る前に少しだけ日記をつけ、今日あったことを短く書き留めておいた。
遠くで電車の走る音がかすかに聞こえ、やがて静かな眠りについた。";

fn verdict(text: &str, cfg: &CurateConfig) -> Option<Rule> {
    let doc = DocView::new(text, cfg.japanese.min_share);
    check(&doc, cfg, &cfg.rule_set())
}

/// `count` distinct letter-only tokens `prefix + two letters + suffix`.
fn tokens(count: usize, prefix: &str, suffix: &str) -> Vec<String> {
    (0..count)
        .map(|i| {
            let a = (b'a' + (i / 26) as u8 % 26) as char;
            let b = (b'a' + (i % 26) as u8) as char;
            format!("{prefix}{a}{b}{suffix}")
        })
        .collect()
}

fn sentences() -> Vec<String> {
    CLEAN_EN
        .split(". ")
        .map(|s| format!("{}.", s.trim_end_matches('.')))
        .collect()
}

/// The sentences of `CLEAN_EN`, each changed by `f`, one per line.
fn each_sentence(f: impl Fn(&str) -> String) -> String {
    sentences()
        .iter()
        .map(|l| f(l))
        .collect::<Vec<_>>()
        .join("\n")
}

const SHORT: [&str; 6] = [
    "The dog slept by the fire.",
    "Rain fell on the old roof.",
    "A cart rolled down the lane.",
    "Bread cooled on the table.",
    "Birds sang in the tall oak.",
    "The clock struck nine times.",
];

/// Documents failing the word, Japanese and line rules, in rule order.
fn crafted_words_and_lines() -> Vec<(Rule, String)> {
    let numbers = vec!["123"; 40].join(" ");
    let digits = vec!["ab12345"; 80].join(" ");
    let katakana = "ソフトウェアのアップデートをインストールしてください。\n".repeat(16);
    vec![
        (Rule::GopherWordCount, "Too short a document.".to_string()),
        (
            Rule::GopherMeanWordLength,
            ["a", "I", "o", "x"].repeat(15).join(" ") + ".",
        ),
        (
            Rule::GopherSymbolRatio,
            format!("{CLEAN_EN} {}", "#tag ".repeat(15)),
        ),
        (Rule::GopherAlphaWords, format!("{CLEAN_EN} {numbers}.")),
        (Rule::JaCharCount, "短い文です。".to_string()),
        (
            Rule::JaHiragana,
            "我们今天去公园散步，天气很好。\n".repeat(30),
        ),
        (Rule::JaKatakana, katakana),
        (Rule::GopherBulletLines, each_sentence(|l| format!("- {l}"))),
        (
            Rule::GopherEllipsisLines,
            each_sentence(|l| format!("{}…", l.trim_end_matches('.'))),
        ),
        (Rule::DigitRatio, format!("{CLEAN_EN} {digits}.")),
    ]
}

/// Documents failing the repetition and web line rules, in rule order.
fn crafted_repetition() -> Vec<(Rule, String)> {
    let s = sentences();
    let short_lines: Vec<String> = tokens(60, "t", "ex")
        .chunks(3)
        .map(|c| format!("{}.", c.join(" ")))
        .collect();
    // Three words of 9, 10 and 9 letters: 31 characters a line, so not short.
    let list_lines: Vec<String> = tokens(20, "", "ational")
        .iter()
        .zip(tokens(20, "", "ationals"))
        .zip(tokens(20, "z", "ationa"))
        .map(|((a, b), c)| format!("{a} {b} {c}."))
        .collect();
    let no_ja_punct: Vec<&str> = CLEAN_JA.lines().map(|l| l.trim_end_matches('。')).collect();
    let mut dup_line_chars = vec![s[1].as_str()];
    dup_line_chars.extend(SHORT);
    dup_line_chars.push(s[1].as_str());
    let mut dup_paragraph_chars = vec![CLEAN_EN];
    dup_paragraph_chars.extend(&SHORT[..5]);
    dup_paragraph_chars.push(CLEAN_EN);
    vec![
        (
            Rule::GopherDupParagraphs,
            [&s[0], &s[1], &s[0], &s[0]]
                .map(|p| p.as_str())
                .join("\n\n"),
        ),
        (
            Rule::GopherDupParagraphChars,
            dup_paragraph_chars.join("\n\n"),
        ),
        (
            Rule::GopherDupLines,
            [&s[0], &s[1], &s[0], &s[0], &s[2]]
                .map(|l| l.as_str())
                .join("\n"),
        ),
        (Rule::GopherDupLineChars, dup_line_chars.join("\n")),
        (
            Rule::GopherTopNgram,
            "the cat ".repeat(30).trim_end().to_string() + ".",
        ),
        (Rule::GopherDupNgram, format!("{CLEAN_EN} {CLEAN_EN}")),
        (
            Rule::FinewebLinePunct,
            each_sentence(|l| l.trim_end_matches('.').to_string()),
        ),
        (Rule::FinewebShortLines, short_lines.join("\n")),
        (Rule::FinewebListRatio, list_lines.join("\n")),
        (Rule::JaTerminalPunct, no_ja_punct.join("\n")),
    ]
}

fn crafted() -> Vec<(Rule, String)> {
    let mut all = crafted_words_and_lines();
    all.extend(crafted_repetition());
    all
}

#[test]
fn clean_documents_pass_every_rule() {
    let cfg = CurateConfig::default();
    assert_eq!(verdict(CLEAN_EN, &cfg), None);
    assert_eq!(verdict(CLEAN_JA, &cfg), None);
    assert!(DocView::new(CLEAN_JA, 0.3).japanese);
    assert!(!DocView::new(CLEAN_EN, 0.3).japanese);
}

#[test]
fn each_rule_fires_on_its_crafted_document() {
    let cfg = CurateConfig::default();
    for (rule, text) in crafted() {
        assert_eq!(verdict(&text, &cfg), Some(rule), "{rule} on {text:?}");
    }
}

#[test]
fn a_disabled_rule_does_not_fire() {
    for (rule, text) in crafted() {
        let cfg = CurateConfig {
            disable: vec![rule],
            ..CurateConfig::default()
        };
        assert_ne!(verdict(&text, &cfg), Some(rule), "{rule} is disabled");
    }
}

#[test]
fn every_quality_rule_has_a_crafted_document() {
    let covered: Vec<Rule> = crafted().into_iter().map(|(r, _)| r).collect();
    let pipeline_only = [
        Rule::Empty,
        Rule::ExactDedup,
        Rule::Blocklist,
        Rule::NearDedup,
    ];
    for rule in Rule::ALL {
        assert!(
            covered.contains(&rule) || pipeline_only.contains(&rule),
            "no crafted document for {rule}"
        );
    }
}

#[test]
fn thresholds_are_read_from_the_config() {
    let mut cfg = CurateConfig::default();
    cfg.words.min_words = 500;
    assert_eq!(verdict(CLEAN_EN, &cfg), Some(Rule::GopherWordCount));
    let mut cfg = CurateConfig::default();
    cfg.japanese.min_hiragana = 0.9;
    assert_eq!(verdict(CLEAN_JA, &cfg), Some(Rule::JaHiragana));
}
