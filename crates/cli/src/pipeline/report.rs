//! The pipeline's evaluation of every stage's model on the same data and prompts, and
//! its report: `report.md`, `report.json` and a self-contained `report.html` (inline SVG,
//! no network).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use manabi_model::{DeviceChoice, GenerateOptions};
use manabi_tokenize::TextTokenizer;
use serde::Serialize;

use super::recipe::Settings;
use super::summary::{StageSummary, show};

/// Every decoder stage's model on the same evaluations.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// The stages whose models were evaluated (`pretrain`, `sft`, `dpo`).
    pub models: Vec<String>,
    /// One row per evaluation: its name and each model's value.
    pub metrics: Vec<(String, Vec<f64>)>,
    /// Each prompt and each model's greedy completion of it.
    pub samples: Vec<(String, Vec<String>)>,
    /// The reward model's mean score of each model's completions (when the pipeline has a
    /// reward stage).
    pub mean_reward: Option<Vec<f64>>,
}

/// Evaluates the checkpoint of every decoder stage in `summaries`.
pub fn evaluate(
    summaries: &[StageSummary],
    settings: &Settings,
    fill: &dyn Fn(&str) -> String,
    out: &Path,
    device: DeviceChoice,
) -> anyhow::Result<Evaluation> {
    let dev = device.resolve()?;
    let eval_dir = out.join("eval");
    std::fs::create_dir_all(&eval_dir).with_context(|| format!("{}", eval_dir.display()))?;
    let text = match &settings.eval_text {
        Some(t) => {
            let src = PathBuf::from(fill(t));
            let mut text =
                std::fs::read_to_string(&src).with_context(|| format!("{}", src.display()))?;
            if settings.eval_text_bytes > 0 && text.len() > settings.eval_text_bytes {
                let mut cut = settings.eval_text_bytes;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                // Whole lines only.
                cut = text[..cut].rfind('\n').map_or(cut, |i| i + 1);
                text.truncate(cut);
            }
            let path = eval_dir.join("text.txt");
            manabi_tokenize::write_atomic(&path, text.as_bytes())?;
            Some(path)
        }
        None => None,
    };
    let mut inputs = manabi_align::report::ReportInputs {
        text,
        pairs: settings
            .eval_pairs
            .as_deref()
            .map(|p| PathBuf::from(fill(p))),
        context: 128,
        ..Default::default()
    };
    let decoders: Vec<&StageSummary> = summaries
        .iter()
        .filter(|s| s.stage != "reward" && s.stage != "curate")
        .collect();
    let reward = summaries.iter().find(|s| s.stage == "reward");
    // The reward model scores the samples read with its own tokenizer.
    let rm = match reward {
        Some(r) => Some((
            manabi_align::load_reward(&r.checkpoint, &dev)?,
            TextTokenizer::load(r.checkpoint.join("tokenizer.json"))?,
        )),
        None => None,
    };
    let mut ev = Evaluation {
        models: decoders.iter().map(|s| s.stage.clone()).collect(),
        metrics: Vec::new(),
        samples: settings
            .prompts
            .iter()
            .map(|p| (p.clone(), Vec::new()))
            .collect(),
        mean_reward: rm.as_ref().map(|_| Vec::new()),
    };
    for s in &decoders {
        let (model, _) = manabi_finetune::load_decoder(&s.checkpoint, &dev)?;
        let tok = TextTokenizer::load(s.checkpoint.join("tokenizer.json"))?;
        inputs.context = 128.min(model.config().max_positions);
        if inputs.text.is_some() || inputs.pairs.is_some() {
            let rows = manabi_align::report::metrics(&model, &tok, &inputs, &dev)?;
            for (i, (name, value)) in rows.into_iter().enumerate() {
                // Name rows by what they measure, not by the run folder's path.
                let name = row_name(&name, settings);
                match ev.metrics.get_mut(i) {
                    Some(row) => row.1.push(value),
                    None => ev.metrics.push((name, vec![value])),
                }
            }
        }
        let specials = manabi_finetune::sft::Specials::of(&tok)?;
        let ids = settings
            .prompts
            .iter()
            .map(|p| tok.encode_with_specials(p))
            .collect::<Result<Vec<_>, _>>()?;
        let opts = GenerateOptions {
            max_new_tokens: settings.max_new_tokens,
            eos_ids: specials.stop_ids(),
            pad_id: specials.pad,
            ..GenerateOptions::default()
        };
        let outs = manabi_model::generate(&model, &ids, &opts, Some(&tok))?;
        let mut texts = Vec::new();
        for (i, o) in outs.iter().enumerate() {
            let t = tok.decode(o, true)?;
            ev.samples[i].1.push(t.clone());
            texts.push((settings.prompts[i].clone(), t));
        }
        if let (Some((rm, rm_tok)), Some(mr)) = (&rm, &mut ev.mean_reward)
            && !texts.is_empty()
        {
            let scores = manabi_align::score_texts(rm, rm_tok, &texts, &dev)?;
            mr.push(scores.iter().sum::<f64>() / scores.len() as f64);
        }
    }
    Ok(ev)
}

/// `perplexity (…/eval/text.txt)` as `perplexity of world-en.txt (first 60000 bytes)`,
/// `prefers chosen (…/pref-en.val.jsonl)` as what it means.
fn row_name(name: &str, settings: &Settings) -> String {
    let file = |p: &Option<String>| {
        p.as_deref()
            .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
            .unwrap_or_default()
    };
    if name.starts_with("perplexity") {
        let cut = match settings.eval_text_bytes {
            0 => String::new(),
            n => format!(" (first {n} bytes)"),
        };
        format!(
            "perplexity of the pre-training text {}{cut}",
            file(&settings.eval_text)
        )
    } else if name.starts_with("prefers chosen") {
        format!(
            "prefers the chosen answer of held-out pairs (summed log-probs, {})",
            file(&settings.eval_pairs)
        )
    } else {
        name.to_string()
    }
}

/// The report as one JSON document.
#[derive(Serialize)]
struct Report<'a> {
    stages: &'a [StageSummary],
    evaluation: &'a Evaluation,
    alignment_tax: Option<Tax>,
    environment: Environment,
    seconds: f64,
}

/// The perplexity of the pre-training text, from the model before alignment (SFT, else
/// the base) to the aligned one.
#[derive(Serialize)]
struct Tax {
    metric: String,
    before_model: String,
    after_model: String,
    before: f64,
    after: f64,
}

#[derive(Serialize)]
struct Environment {
    manabi: String,
    commit: String,
    device: String,
    threads: usize,
    os: String,
}

fn environment(device: DeviceChoice) -> Environment {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    Environment {
        manabi: env!("CARGO_PKG_VERSION").into(),
        commit,
        device: device.concrete().to_string(),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
    }
}

fn tax(ev: &Evaluation) -> Option<Tax> {
    let row = ev
        .metrics
        .iter()
        .find(|(m, _)| m.starts_with("perplexity"))?;
    let after = ev.models.iter().position(|m| m == "dpo")?;
    let before = ev
        .models
        .iter()
        .position(|m| m == "sft")
        .or_else(|| ev.models.iter().position(|m| m == "pretrain"))?;
    Some(Tax {
        metric: row.0.clone(),
        before_model: ev.models[before].clone(),
        after_model: ev.models[after].clone(),
        before: row.1[before],
        after: row.1[after],
    })
}

/// Writes `report.json`, `report.md` and `report.html` into `out`; returns the path of
/// `report.md`.
pub fn write(
    out: &Path,
    stages: &[StageSummary],
    ev: &Evaluation,
    device: DeviceChoice,
    elapsed: std::time::Duration,
) -> anyhow::Result<PathBuf> {
    let report = Report {
        stages,
        evaluation: ev,
        alignment_tax: tax(ev),
        environment: environment(device),
        seconds: elapsed.as_secs_f64(),
    };
    let json = serde_json::to_string_pretty(&report)?;
    manabi_tokenize::write_atomic(&out.join("report.json"), json.as_bytes())?;
    let md = markdown(&report);
    let path = out.join("report.md");
    manabi_tokenize::write_atomic(&path, md.as_bytes())?;
    let html = html(&report, out);
    manabi_tokenize::write_atomic(&out.join("report.html"), html.as_bytes())?;
    Ok(path)
}

fn markdown(r: &Report) -> String {
    let mut s = String::from("# manabi pipeline report\n\n## Stages\n\n");
    s.push_str(
        "| stage | metric | before | after | steps | data | time | tokens/s | trained / all parameters |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for st in r.stages {
        let _ = writeln!(
            s,
            "| {} | {} ({}) | {} | **{}** | {} | {} {} | {:.1} s | {:.0} | {} / {} |",
            st.stage,
            st.metric,
            better(st),
            st.show(st.before),
            st.show(st.after),
            st.steps,
            st.data_size,
            st.data_unit,
            st.seconds,
            st.tokens_per_s,
            st.trainable_params,
            st.params
        );
    }
    let ev = r.evaluation;
    let _ = write!(s, "\n## Every model on the same data\n\n| evaluation |");
    for m in &ev.models {
        let _ = write!(s, " {m} |");
    }
    let _ = write!(s, "\n|---|{}\n", "---|".repeat(ev.models.len()));
    for (name, values) in &ev.metrics {
        let _ = write!(s, "| {name} |");
        for v in values {
            let _ = write!(s, " {} |", show(*v, is_share(name)));
        }
        s.push('\n');
    }
    if let Some(mr) = &ev.mean_reward {
        let _ = write!(s, "| reward model's mean score of the samples below |");
        for v in mr {
            let _ = write!(s, " {v:.3} |");
        }
        s.push('\n');
    }
    if let Some(t) = &r.alignment_tax {
        let _ = write!(
            s,
            "\nAlignment tax: {} {} ({}) → {} ({}), {:+.4}.\n",
            t.metric,
            show(t.before, false),
            t.before_model,
            show(t.after, false),
            t.after_model,
            t.after - t.before
        );
    }
    s.push_str("\n## Samples (greedy)\n");
    for (prompt, outs) in &ev.samples {
        let _ = write!(s, "\n```text\n{prompt}\n```\n\n");
        for (m, o) in ev.models.iter().zip(outs) {
            let _ = writeln!(s, "- **{m}**: `{}`", o.replace('`', "'").replace('\n', "⏎"));
        }
    }
    s.push_str("\n## Receipts (SHA-256)\n\n| stage | input | hash |\n|---|---|---|\n");
    for st in r.stages {
        for (k, v) in &st.receipt.inputs {
            let _ = writeln!(s, "| {} | {k} | `{}` |", st.stage, &v[..16.min(v.len())]);
        }
        let out = &st.receipt.output;
        let _ = writeln!(
            s,
            "| {} | → weights | `{}` |",
            st.stage,
            &out[..16.min(out.len())]
        );
    }
    let e = &r.environment;
    let _ = write!(
        s,
        "\n## Environment\n\nmanabi {} (commit {}), device {}, {} threads, {}; {:.1} s in all.\n",
        e.manabi, e.commit, e.device, e.threads, e.os, r.seconds
    );
    s
}

/// Which way the stage's metric improves (curation's counts have no better side).
fn better(st: &StageSummary) -> &'static str {
    match (st.stage.as_str(), st.lower_is_better) {
        ("curate", _) => "the corpus",
        (_, true) => "lower is better",
        (_, false) => "higher is better",
    }
}

/// Whether an evaluation row is a share (shown in %), not a perplexity.
fn is_share(name: &str) -> bool {
    !name.starts_with("perplexity")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Two bars, before and after, of one stage's metric, as inline SVG.
fn bars(st: &StageSummary) -> String {
    let (w, h) = (220.0, 120.0);
    let top = st.before.abs().max(st.after.abs()).max(1e-9);
    let bar = |x: f64, v: f64, fill: &str, label: &str| {
        let bh = (v.abs() / top) * (h - 40.0);
        format!(
            "<rect x='{x}' y='{y:.1}' width='60' height='{bh:.1}' fill='{fill}'/>\
             <text x='{tx}' y='{ty:.1}' font-size='11' text-anchor='middle'>{}</text>\
             <text x='{tx}' y='{ly}' font-size='11' text-anchor='middle'>{label}</text>",
            st.show(v),
            y = h - 20.0 - bh,
            tx = x + 30.0,
            ty = h - 24.0 - bh,
            ly = h - 6.0,
        )
    };
    format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' role='img' \
         aria-label='{}'>{}{}</svg>",
        esc(&st.metric),
        bar(30.0, st.before, "#9aa5b1", "before"),
        bar(130.0, st.after, "#2f6fbd", "after"),
    )
}

fn html(r: &Report, out: &Path) -> String {
    let mut s = String::from(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>\
         <title>manabi pipeline report</title><style>\
         body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}\
         table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em}\
         .stage{display:inline-block;vertical-align:top;margin:0 1em 1em 0}\
         pre{background:#f4f4f4;padding:.5em;white-space:pre-wrap}\
         .plot{width:400px}.plot svg{width:100%;height:auto}</style></head><body>\
         <h1>manabi pipeline report</h1><h2>Stages</h2>",
    );
    for st in r.stages {
        let _ = write!(
            s,
            "<div class='stage'><h3>{}</h3><p>{} ({})<br>{} steps, {} {}, {:.1} s</p>{}",
            esc(&st.stage),
            esc(&st.metric),
            better(st),
            st.steps,
            st.data_size,
            esc(&st.data_unit),
            st.seconds,
            bars(st)
        );
        // The Trainer's own curves of the stage (loss.svg, metric.svg), inlined.
        for plot in ["loss.svg", "metric.svg"] {
            if let Ok(svg) = std::fs::read_to_string(out.join(&st.stage).join(plot)) {
                let svg = svg.find("<svg").map_or("", |i| &svg[i..]);
                let _ = write!(s, "<div class='plot'>{svg}</div>");
            }
        }
        s.push_str("</div>");
    }
    let ev = r.evaluation;
    s.push_str("<h2>Every model on the same data</h2><table><tr><th>evaluation</th>");
    for m in &ev.models {
        let _ = write!(s, "<th>{}</th>", esc(m));
    }
    s.push_str("</tr>");
    for (name, values) in &ev.metrics {
        let _ = write!(s, "<tr><td>{}</td>", esc(name));
        for v in values {
            let _ = write!(s, "<td>{}</td>", show(*v, is_share(name)));
        }
        s.push_str("</tr>");
    }
    if let Some(mr) = &ev.mean_reward {
        s.push_str("<tr><td>reward model's mean score of the samples</td>");
        for v in mr {
            let _ = write!(s, "<td>{v:.3}</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    if let Some(t) = &r.alignment_tax {
        let _ = write!(
            s,
            "<p>Alignment tax: {} {} ({}) → {} ({}), {:+.4}.</p>",
            esc(&t.metric),
            show(t.before, false),
            esc(&t.before_model),
            show(t.after, false),
            esc(&t.after_model),
            t.after - t.before
        );
    }
    s.push_str("<h2>Samples (greedy)</h2>");
    for (prompt, outs) in &ev.samples {
        let _ = write!(s, "<pre>{}</pre><table>", esc(prompt));
        for (m, o) in ev.models.iter().zip(outs) {
            let _ = write!(s, "<tr><th>{}</th><td>{}</td></tr>", esc(m), esc(o));
        }
        s.push_str("</table>");
    }
    let e = &r.environment;
    let _ = write!(
        s,
        "<h2>Environment</h2><p>manabi {} (commit {}), device {}, {} threads, {}; {:.1} s in all.</p></body></html>",
        esc(&e.manabi),
        esc(&e.commit),
        esc(&e.device),
        e.threads,
        esc(&e.os),
        r.seconds
    );
    s
}
