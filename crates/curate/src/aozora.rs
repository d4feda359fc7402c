//! Aozora Bunko cleaning: the text of a work without its markup, header and footer, as
//! described in Aozora's input manual (https://www.aozora.gr.jp/annotation/).
//!
//! - header: the title / author lines and the 【テキスト中に現れる記号について】 block
//!   between two lines of dashes;
//! - footer: from the line that starts with `底本：` to the end (the bibliographic
//!   notes, input and proofreading credits);
//! - ruby: `《よみ》` readings are dropped and the start marker `｜` removed;
//! - annotations `［＃…］` (indents, emphasis, page breaks) are dropped;
//! - gaiji `※［＃…］` (a character outside JIS, described in words) is dropped whole,
//!   and so is a `※` whose description was already stripped (as in the texts of
//!   `../shared/data`).
//!
//! Runs of blank lines left behind become one blank line.

/// The shortest run of `-` that counts as the header's dash line.
const MIN_DASHES: usize = 10;
/// The header (title, author, translator, the symbol block) sits within these lines.
const HEADER_LINES: usize = 60;

/// The work's text without Aozora markup, header and footer.
pub fn clean(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let start = header_end(&lines);
    let end = footer_start(&lines).max(start);
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in &lines[start..end] {
        let line = strip_markup(line);
        if line.trim().is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(line.trim_end());
    }
    out
}

fn is_dash_line(line: &str) -> bool {
    let t = line.trim();
    t.chars().count() >= MIN_DASHES && t.chars().all(|c| c == '-' || c == '－')
}

/// The first line of the body: after the second dash line when the header has the
/// symbol block, else after the title lines (short lines without `。` before the first
/// blank line, within the first six lines); 0 when neither is there.
fn header_end(lines: &[&str]) -> usize {
    let head = &lines[..lines.len().min(HEADER_LINES)];
    let mut dashes = head
        .iter()
        .enumerate()
        .filter(|(_, l)| is_dash_line(l))
        .map(|(i, _)| i);
    if let (Some(_), Some(second)) = (dashes.next(), dashes.next()) {
        return second + 1;
    }
    let title_like = |l: &&str| l.chars().count() <= 50 && !l.contains('。');
    match lines.iter().take(6).position(|l| l.trim().is_empty()) {
        Some(blank) if blank > 0 && lines[..blank].iter().all(title_like) => blank + 1,
        _ => 0,
    }
}

/// The line where the footer starts (`底本：` at the start of a line), or the end.
fn footer_start(lines: &[&str]) -> usize {
    lines
        .iter()
        .position(|l| l.starts_with("底本：") || l.starts_with("底本:"))
        .unwrap_or(lines.len())
}

/// One line without ruby, ruby markers, annotations and gaiji.
fn strip_markup(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        let after = &rest[c.len_utf8()..];
        rest = match c {
            '｜' => after,
            '《' => skip_closed(after, '《', '》').unwrap_or(after),
            '［' if after.starts_with('＃') => skip_closed(after, '［', '］').unwrap_or(""),
            '※' if after.starts_with("［＃") => {
                skip_closed(&after['［'.len_utf8()..], '［', '］').unwrap_or("")
            }
            '※' => after,
            _ => {
                out.push(c);
                after
            }
        };
    }
    out
}

/// The text after the `close` that ends a bracket opened just before `s`, nested
/// `open`s counted; `None` when it is not closed on this line.
fn skip_closed(s: &str, open: char, close: char) -> Option<&str> {
    let mut depth = 1usize;
    for (i, c) in s.char_indices() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Some(&s[i + c.len_utf8()..]);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(clean(input), expected, "input: {input:?}");
    }

    const HEADER: &str = "\u{feff}こころ\n夏目漱石\n\n\
        -------------------------------------------------------\n\
        【テキスト中に現れる記号について】\n\n\
        《》：ルビ\n（例）私《わたし》は\n\n\
        ｜：ルビの付く文字列の始まりを特定する記号\n\
        ［＃］：入力者注\n\
        -------------------------------------------------------\n\n";

    #[test]
    fn header_and_footer_are_removed() {
        let text = format!(
            "{HEADER}上　先生と私\n\n一\n\n　私はその人を常に先生と呼んでいた。\n\n\n\n\
             底本：「こころ」集英社文庫、集英社\n　　　1991年\n入力：j.utiyama\n"
        );
        check(
            &text,
            "上　先生と私\n\n一\n\n　私はその人を常に先生と呼んでいた。",
        );
    }

    #[test]
    fn a_header_without_the_symbol_block_loses_its_title_lines() {
        check(
            "羅生門\n芥川龍之介\n\n　ある日の暮方の事である。\n",
            "　ある日の暮方の事である。",
        );
        // No blank line near the top, or prose before it: nothing looks like a header.
        check("一行目。\n二行目。\n", "一行目。\n二行目。");
        check("一行目。\n\n二行目。\n", "一行目。\n\n二行目。");
    }

    #[test]
    fn ruby_annotations_and_gaiji_are_removed() {
        check("吾輩《わがはい》は猫である。", "吾輩は猫である。");
        check("先生一人｜麦藁帽《むぎわらぼう》を", "先生一人麦藁帽を");
        check("［＃ここから２字下げ］本文［＃ここで字下げ終わり］", "本文");
        check("「大丈夫［＃「大丈夫」に傍点］」", "「大丈夫」");
        check(
            "葉を※［＃「てへん＋劣」、第3水準1-84-77］ぎ取って",
            "葉をぎ取って",
        );
        check("彼の気※を聞かされた", "彼の気を聞かされた");
        check(
            "本文。\n［＃改ページ］\n\n\n次の章\n［＃５字下げ］二［＃「二」は中見出し］\n本文",
            "本文。\n\n次の章\n二\n本文",
        );
    }

    #[test]
    fn unclosed_markup_does_not_leak_markers() {
        let out = clean("本文《よみ\n注［＃閉じない\n残り※［＃外字");
        assert_eq!(out, "本文よみ\n注\n残り");
        for mark in ['《', '》', '｜', '※'] {
            assert!(!out.contains(mark), "{out}");
        }
        assert!(!out.contains("［＃"));
    }
}
