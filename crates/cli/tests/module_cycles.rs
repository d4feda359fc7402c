//! Architecture check (docs/architecture.md: no module cycles): in every crate of the workspace, the
//! modules (one per file) must depend on each other without cycles, so each can be read, tested
//! and moved bottom-up. Edges come from `use` and from `crate::`/`super::`/`self::`/child paths
//! in code; `pub use` re-exports, `mod x;`, comments, strings and `#[cfg(test)]` items do not count.
//! Std-only, so it also runs standalone: `rustc --edition 2024 --test THIS -o /tmp/x && /tmp/x`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

type Module = Vec<String>; // path below `crate`; empty = the crate root
type Edges = BTreeMap<(Module, Module), Vec<String>>; // edge -> "file:line `path`" references

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "crate".to_string()
    } else {
        m.join("::")
    }
}

/// Blanks comments, strings and char literals (keeping newlines, so lines still count).
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    // `r"`, `r#"`, `br#"`, `cr"`: the `r` starts a token (alone or after a `b`/`c` prefix).
    let raw_start = |b: &[u8], i: usize| {
        let starts = i == 0
            || !ident(b[i - 1])
            || matches!(b[i - 1], b'b' | b'c') && (i == 1 || !ident(b[i - 2]));
        starts && b[i + 1..].iter().find(|&&c| c != b'#') == Some(&b'"')
    };
    let mut i = 0;
    while i < b.len() {
        let start = i;
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'r' && raw_start(b, i) {
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            i += hashes + 2;
            while i < b.len() && !b[i..].starts_with(&close) {
                i += 1;
            }
            i += close.len();
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', 'é'), not a lifetime ('a).
            let len = src[i + 1..].chars().next().map_or(1, char::len_utf8);
            if b.get(i + 1) == Some(&b'\\') {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            } else if b.get(i + 1 + len) == Some(&b'\'') {
                i += len + 2;
            } else {
                i += 1;
                continue;
            }
        } else {
            i += 1;
            continue;
        }
        blank(&mut out, start, i);
    }
    String::from_utf8(out).expect("only whole ASCII-delimited regions are blanked")
}

/// Identifiers (with `r#` and `$crate`), `::`, and single punctuation bytes, each with its line.
fn lex(text: &str) -> Vec<(String, usize)> {
    let (b, mut toks, mut i, mut line) = (text.as_bytes(), Vec::new(), 0, 1);
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
        }
        if c.is_ascii_whitespace() || !c.is_ascii() {
            i += 1;
            continue;
        }
        let start = i;
        if b[i..].starts_with(b"::") {
            i += 2;
        } else if b[i..].starts_with(b"r#") && b.get(i + 2).is_some_and(|&c| ident(c)) {
            i += 2;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
        } else if ident(c) || (c == b'$' && b[i..].starts_with(b"$crate")) {
            i += 1;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
        } else {
            i += 1;
        }
        toks.push((text[start..i].trim_start_matches("r#").to_string(), line));
    }
    toks
}

/// Drops `#[cfg(test)]` items (attributes, then up to `;` or the matching `}`).
fn drop_cfg_test(toks: Vec<(String, usize)>) -> Vec<(String, usize)> {
    let is = |t: &[(String, usize)], i: usize, s: &[&str]| {
        s.iter()
            .enumerate()
            .all(|(k, s)| t.get(i + k).is_some_and(|t| t.0 == *s))
    };
    let (mut out, mut i) = (Vec::new(), 0);
    while i < toks.len() {
        if !is(&toks, i, &["#", "[", "cfg", "(", "test", ")", "]"]) {
            out.push(toks[i].clone());
            i += 1;
            continue;
        }
        i += 7;
        let mut depth = 0;
        while i < toks.len() {
            match toks[i].0.as_str() {
                "{" => depth += 1,
                "}" => {
                    depth -= 1;
                    if depth == 0 {
                        i += 1;
                        break;
                    }
                }
                ";" if depth == 0 => {
                    i += 1;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
    }
    out
}

/// Expands a use tree (`a::{b, c::{d as e, self}}`) into (path, bound name) pairs.
fn use_tree(
    toks: &[String],
    i: &mut usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    let mut path = prefix.to_vec();
    while *i < toks.len() {
        match toks[*i].as_str() {
            "::" => *i += 1,
            "{" => {
                *i += 1;
                while *i < toks.len() && toks[*i] != "}" {
                    use_tree(toks, i, &path, out);
                    if toks.get(*i).is_some_and(|t| t == ",") {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            "," | "}" => break,
            "as" => {
                out.push((path, toks.get(*i + 1).cloned()));
                *i += 2;
                return;
            }
            seg => {
                path.push(seg.to_string());
                *i += 1;
            }
        }
    }
    out.push((path, None));
}

struct Source {
    module: Module,
    file: String,
    toks: Vec<(String, usize)>,
}

/// `path` as seen from `module`, made absolute; `None` for other crates (and std).
fn absolute(module: &[String], path: &[String], modules: &BTreeSet<Module>) -> Option<Vec<String>> {
    let (mut abs, mut rest): (Vec<String>, &[String]) = match path.first()?.as_str() {
        "crate" | "$crate" => (Vec::new(), &path[1..]),
        "self" | "super" => (module.to_vec(), path),
        first if modules.contains(&[module, &[first.to_string()]].concat()) => {
            (module.to_vec(), path)
        }
        _ => return None,
    };
    while let Some(seg) = rest.first().filter(|s| *s == "self" || *s == "super") {
        if seg == "super" {
            abs.pop();
        }
        rest = &rest[1..];
    }
    abs.extend(rest.iter().filter(|s| *s != "self").cloned());
    Some(abs)
}

/// The module an absolute path lands in (through `pub use` re-exports); `None` for the root.
fn target(
    abs: &[String],
    modules: &BTreeSet<Module>,
    reexports: &BTreeMap<Module, BTreeMap<String, Vec<String>>>,
    depth: usize,
) -> Option<Module> {
    let k = (0..=abs.len())
        .rev()
        .find(|&k| modules.contains(&abs[..k].to_vec()))?;
    let m = abs[..k].to_vec();
    if let Some(via) = abs
        .get(k)
        .and_then(|n| reexports.get(&m)?.get(n))
        .filter(|_| depth < 8)
    {
        return target(
            &[via.clone(), abs[k + 1..].to_vec()].concat(),
            modules,
            reexports,
            depth + 1,
        );
    }
    (!m.is_empty()).then_some(m)
}

fn crate_edges(src: &Path, root: &Path) -> Edges {
    let mut files = vec![src.to_path_buf()];
    let mut sources = Vec::new();
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(
                fs::read_dir(&p)
                    .expect("readable src dir")
                    .map(|e| e.expect("dir entry").path()),
            );
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(src).expect("below src").with_extension("");
            let mut module: Module = rel
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            if module == ["lib"] || module == ["main"] || module.last().is_some_and(|l| l == "mod")
            {
                module.pop();
            }
            let text = fs::read_to_string(&p).expect("readable source file");
            let file = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            sources.push(Source {
                module,
                file,
                toks: drop_cfg_test(lex(&strip(&text))),
            });
        }
    }
    let modules: BTreeSet<Module> = sources.iter().map(|s| s.module.clone()).collect();
    // Each file's `use` statements: (line, public, expanded paths) and the token spans they cover.
    let mut uses = Vec::new();
    for s in &sources {
        let (t, mut list) = (&s.toks, Vec::new());
        for i in 0..t.len() {
            if t[i].0 != "use" || t.get(i + 1).is_some_and(|n| n.0 == "<") {
                continue;
            }
            // `pub use` / `pub(crate) use` / `pub(super) use` re-export: not an edge.
            let public = i >= 1 && t[i - 1].0 == "pub"
                || i >= 4
                    && t[i - 1].0 == ")"
                    && t[..i - 1].iter().rev().take(5).any(|x| x.0 == "pub");
            let end = (i..t.len()).find(|&j| t[j].0 == ";").unwrap_or(t.len());
            let words: Vec<String> = t[i + 1..end].iter().map(|x| x.0.clone()).collect();
            let (mut paths, mut k) = (Vec::new(), 0);
            while k < words.len() {
                use_tree(&words, &mut k, &[], &mut paths);
                k += 1;
            }
            list.push((t[i].1, public, paths, i..end));
        }
        uses.push(list);
    }
    let mut reexports: BTreeMap<Module, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (s, list) in sources.iter().zip(&uses) {
        for (path, alias) in list.iter().filter(|u| u.1).flat_map(|u| &u.2) {
            let Some(abs) = absolute(&s.module, path, &modules) else {
                continue;
            };
            let bound = alias
                .clone()
                .or_else(|| abs.last().cloned())
                .filter(|n| n != "*");
            if let Some(n) = bound {
                reexports
                    .entry(s.module.clone())
                    .or_default()
                    .insert(n, abs);
            }
        }
    }
    let mut edges = Edges::new();
    for (s, list) in sources.iter().zip(&uses) {
        let mut add = |path: &[String], line: usize, how: &str| {
            let Some(to) = absolute(&s.module, path, &modules)
                .and_then(|a| target(&a, &modules, &reexports, 0))
            else {
                return;
            };
            if to == s.module {
                return;
            }
            let (at, refs) = (
                format!("{}:{line} ", s.file),
                edges.entry((s.module.clone(), to)).or_default(),
            );
            match refs.last_mut() {
                Some(last) if last.starts_with(&at) => *last += &format!(", {}", path.join("::")),
                _ => refs.push(format!("{at}{how}{}", path.join("::"))),
            }
        };
        let mut bound = BTreeSet::new();
        for (line, public, paths, _) in list {
            for (path, alias) in paths {
                bound.extend(
                    alias
                        .clone()
                        .or_else(|| path.iter().rev().find(|p| *p != "self").cloned()),
                );
                if !public {
                    add(path, *line, "use ");
                }
            }
        }
        let t = &s.toks;
        let in_use = |i: usize| list.iter().any(|u| u.3.contains(&i));
        for i in 0..t.len() {
            let first = t[i].0.as_str();
            let prefixed = matches!(first, "crate" | "$crate" | "super" | "self");
            let child = !bound.contains(first)
                && modules.contains(&[s.module.clone(), vec![first.to_string()]].concat());
            if !(prefixed || child)
                || i > 0 && matches!(t[i - 1].0.as_str(), "::" | "." | "in")
                || in_use(i)
            {
                continue;
            }
            // `first::seg::seg…`, up to the first non-identifier (`::<T>`, `::{`, `(`, …).
            let (mut path, mut j) = (vec![first.to_string()], i + 1);
            while t.get(j).is_some_and(|x| x.0 == "::")
                && let Some(seg) = t
                    .get(j + 1)
                    .filter(|x| x.0.starts_with(|c: char| c.is_alphabetic() || c == '_'))
            {
                path.push(seg.0.clone());
                j += 2;
            }
            if path.len() > 1 {
                add(&path, t[i].1, "");
            }
        }
    }
    edges
}

/// Strongly connected components with two or more modules (Tarjan).
fn cycles(edges: &Edges) -> Vec<Vec<Module>> {
    struct Tarjan<'a> {
        next: BTreeMap<&'a Module, Vec<&'a Module>>,
        index: BTreeMap<&'a Module, (usize, usize)>,
        stack: Vec<&'a Module>,
        out: Vec<Vec<Module>>,
    }
    fn visit<'a>(t: &mut Tarjan<'a>, v: &'a Module) {
        let n = t.index.len();
        t.index.insert(v, (n, n));
        t.stack.push(v);
        for w in t.next.get(v).cloned().unwrap_or_default() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let low = t.index[w].1.min(t.index[v].1);
                t.index.get_mut(v).expect("visited").1 = low;
            } else if t.stack.contains(&w) {
                let low = t.index[w].0.min(t.index[v].1);
                t.index.get_mut(v).expect("visited").1 = low;
            }
        }
        if t.index[v].0 == t.index[v].1 {
            let at = t.stack.iter().position(|x| *x == v).expect("on stack");
            let scc: Vec<Module> = t.stack.drain(at..).cloned().collect();
            if scc.len() > 1 {
                t.out.push(scc);
            }
        }
    }
    let mut t = Tarjan {
        next: BTreeMap::new(),
        index: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for (a, b) in edges.keys() {
        t.next.entry(a).or_default().push(b);
    }
    let nodes: Vec<&Module> = t.next.keys().copied().collect();
    for v in nodes {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out.iter_mut().for_each(|c| c.sort());
    t.out
}

/// One shortest cycle through the component's first module.
fn one_cycle(scc: &[Module], edges: &Edges) -> Vec<Module> {
    let start = &scc[0];
    let mut prev: BTreeMap<&Module, &Module> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for (_, w) in edges.keys().filter(|(a, b)| a == v && scc.contains(b)) {
            if !prev.contains_key(w) {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
        if prev.contains_key(start) {
            break;
        }
    }
    let mut path = vec![start.clone()];
    let mut at = prev[start];
    while at != start {
        path.push(at.clone());
        at = prev[at];
    }
    path.push(start.clone());
    path.reverse();
    path
}

#[test]
fn no_module_cycles() {
    let root = option_env!("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from("."), |d| Path::new(d).join("../.."));
    let mut crates: Vec<PathBuf> = fs::read_dir(root.join("crates"))
        .expect("crates/ below the workspace root")
        .map(|e| e.expect("dir entry").path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    crates.sort();
    assert!(
        !crates.is_empty(),
        "no crates/*/src found below {}",
        root.display()
    );
    let mut report = Vec::new();
    for src in &crates {
        let krate = src
            .parent()
            .and_then(Path::file_name)
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let edges = crate_edges(src, &root);
        for scc in cycles(&edges) {
            let cycle = one_cycle(&scc, &edges);
            let mut text = format!(
                "{krate}: {}\n  component ({}): {}\n",
                cycle
                    .iter()
                    .map(|m| name(m))
                    .collect::<Vec<_>>()
                    .join(" -> "),
                scc.len(),
                scc.iter().map(|m| name(m)).collect::<Vec<_>>().join(", ")
            );
            for pair in cycle.windows(2) {
                let refs = &edges[&(pair[0].clone(), pair[1].clone())];
                let more = if refs.len() > 3 {
                    format!(" (+{} more)", refs.len() - 3)
                } else {
                    String::new()
                };
                text += &format!(
                    "  {} -> {}: {}{more}\n",
                    name(&pair[0]),
                    name(&pair[1]),
                    refs[..refs.len().min(3)].join("; ")
                );
            }
            report.push(text);
        }
    }
    for r in &report {
        println!("{r}");
    }
    assert!(
        report.is_empty(),
        "{} module cycle(s), listed above (docs/architecture.md)",
        report.len()
    );
}
