//! SFT data and settings: EOS stays a target, long prompts are cut and long responses
//! counted, exact match scores the rendered response, and bad data or config values are
//! one-line errors naming the file and line or the key.

use manabi_finetune::SftConfig;
use manabi_finetune::sft::encode::{self, Encoded};
use manabi_model::DeviceChoice;
use manabi_objectives::Recipe;

use super::{base_model, recipe, root, serial};

#[test]
fn eos_is_a_target_even_when_it_is_also_the_padding() {
    // Pad = EOS = 3 (a GPT-2-style tokenizer without a pad token): the padding of the
    // shorter row is ignored, each example's own EOS is trained.
    let ex = |tokens: &[u32], from: usize| Encoded {
        tokens: tokens.to_vec(),
        trained: (0..tokens.len()).map(|i| i >= from).collect(),
        response_start: from,
    };
    let examples = vec![ex(&[5, 6, 7, 8, 3], 3), ex(&[10, 11, 3], 2)];
    let b = encode::batch(&examples, &[&[0], &[1]], 3, false);
    let ignore = manabi_model::IGNORE_INDEX;
    assert_eq!(b.seq, 4);
    assert_eq!(&b.targets[..4], &[ignore, ignore, 8, 3]);
    assert_eq!(&b.targets[4..], &[ignore, 3, ignore, ignore]);
    assert_eq!(&b.inputs[4..], &[10, 11, 3, 3]);
}

#[test]
fn bad_data_and_config_values_name_the_line_or_key() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let base = base_model(tmp.path());
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"context\":\"c\",\"question\":\"q\",\"answer\":\"a\"}\n{\"context\":\"c\",\"question\":\"q\"}\n",
    )
    .unwrap();
    let text = recipe(tmp.path(), &base, "bad", "").replace(
        &root()
            .join("datasets/sft/qa-en.train.jsonl")
            .display()
            .to_string(),
        &bad.display().to_string(),
    );
    let cfg = SftConfig::parse(&text, &[]).unwrap();
    let e = manabi_finetune::sft(&cfg, DeviceChoice::from_env().unwrap(), false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.jsonl:2") && e.contains("missing field `answer`"),
        "{e}"
    );
    // --skip-invalid counts instead.
    let cfg = SftConfig::parse(&text, &["data.skip_invalid=true".into()]).unwrap();
    let p = manabi_finetune::sft::recipe::prepare(&cfg).unwrap();
    assert_eq!((p.train.examples.len(), p.skipped), (1, 1));
    // A line that is not JSON at all.
    std::fs::write(
        &bad,
        "{\"context\":\"c\",\"question\":\"q\",\"answer\":\"a\"}\n{\"context\": \"c\",\n",
    )
    .unwrap();
    let cfg = SftConfig::parse(&text, &[]).unwrap();
    let e = manabi_finetune::sft(&cfg, DeviceChoice::from_env().unwrap(), false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.jsonl:2") && e.contains("not valid JSON") && !e.contains('\n'),
        "{e}"
    );
    // A misspelt key, a wrong type and a value the checks refuse each name the key, its
    // line and the recipe file.
    let file = tmp.path().join("wrong.toml");
    for (from, to, key) in [
        ("warmup_steps = 2", "warmup_step = 2", "warmup_step"),
        (
            "batch_size = 4",
            "batch_size = \"four\"",
            "wrong.toml: train.batch_size",
        ),
        ("r = 4", "r = 0", "wrong.toml: peft.r"),
    ] {
        let text = recipe(tmp.path(), &base, "x", "").replace(from, to);
        std::fs::write(&file, &text).unwrap();
        let e = SftConfig::load(&file, &[]).unwrap_err().to_string();
        let line = text.lines().position(|l| l == to).unwrap() + 1;
        assert!(
            e.contains(key) && e.contains(&format!("line {line}")),
            "{to}: {e}"
        );
    }
    let e = SftConfig::parse(&recipe(tmp.path(), &base, "x", ""), &["peft.r=0".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("peft.r") && e.contains("(from --set)"), "{e}");
    let e = SftConfig::parse(
        &recipe(tmp.path(), &base, "x", ""),
        &["peft.targets=[\"qkv\"]".into()],
    )
    .unwrap();
    let e = manabi_finetune::sft(&e, DeviceChoice::from_env().unwrap(), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown target module `qkv`"), "{e}");
}

#[test]
fn every_sft_config_file_loads() {
    let _rng = serial();
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("configs/sft")).unwrap() {
        let path = entry.unwrap().path();
        SftConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    assert!(n >= 1);
}

#[test]
fn gzipped_jsonl_reads_like_plain_jsonl_and_a_corrupt_one_names_the_file() {
    use manabi_finetune::sft::data::{Format, Record, read_files};
    let fields = Default::default();
    let large = root().join("datasets/sft/qa-en.train-large.jsonl.gz");
    let d = read_files(std::slice::from_ref(&large), Format::Auto, &fields, false).unwrap();
    assert_eq!(d.records.len(), 20_000);
    assert_eq!(d.sources[19_999].line, 20_000);
    for r in &d.records {
        let Record::Fields { format, values } = r else {
            panic!("not a QA record: {r:?}");
        };
        assert_eq!(*format, Format::Qa);
        assert!(
            values["context"].contains(values["answer"].as_str()),
            "{values:?}"
        );
    }

    // The same lines, plain and gzipped, give the same records.
    let tmp = tempfile::tempdir().unwrap();
    let plain = root().join("datasets/sft/qa-ja.val.jsonl");
    let text = std::fs::read(&plain).unwrap();
    let gz = tmp.path().join("qa.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &text).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let a = read_files(&[plain], Format::Auto, &fields, false).unwrap();
    let b = read_files(&[gz], Format::Auto, &fields, false).unwrap();
    assert_eq!(a.records, b.records);

    let bad = tmp.path().join("broken.jsonl.gz");
    std::fs::write(&bad, b"{\"context\":\"not gzip\"}\n").unwrap();
    let e = read_files(&[bad], Format::Auto, &fields, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("broken.jsonl.gz"), "{e}");
}

#[test]
fn evaluation_prompts_longer_than_the_model_keep_their_last_tokens() {
    // Prompts cut to the block size (the model's 128 positions) leave too little room for
    // 8 generated tokens: generation keeps their last tokens instead of failing.
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let base = base_model(tmp.path());
    let long = "the cat sat on the old red mat near the door ".repeat(30);
    let line = serde_json::json!({"prompt": long, "completion": " yes"}).to_string() + "\n";
    let data = tmp.path().join("long.jsonl");
    std::fs::write(&data, line.repeat(6)).unwrap();
    let text = recipe(tmp.path(), &base, "long", "")
        .replace("block_size = 96", "block_size = 128")
        .replace(
            &format!(
                "\"{}\"",
                root().join("datasets/sft/qa-en.train.jsonl").display()
            ),
            &format!("\"{}\"", data.display()),
        )
        .replace(
            &format!(
                "\"{}\"",
                root().join("datasets/sft/qa-en.val.jsonl").display()
            ),
            &format!("\"{}\"", data.display()),
        );
    let over = [
        "train.steps=2".to_string(),
        "train.eval_every=2".to_string(),
        "eval.max_new_tokens=8".to_string(),
    ];
    let cfg = SftConfig::parse(&text, &over).unwrap();
    let r = manabi_finetune::sft(&cfg, DeviceChoice::from_env().unwrap(), false).unwrap();
    let preds = std::fs::read_to_string(r.predictions.expect("generation ran")).unwrap();
    assert_eq!(preds.lines().count(), 6);
    for line in preds.lines() {
        let p: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(p["prompt"].as_str().unwrap().len() > 100, "{line}");
    }
}

#[test]
fn long_prompts_are_cut_from_the_left_and_long_responses_are_dropped_and_counted() {
    let _rng = serial();
    let tmp = tempfile::tempdir().unwrap();
    let base = base_model(tmp.path());
    let data = tmp.path().join("long.jsonl");
    let long = "the cat sat on the mat ".repeat(12);
    let lines = [
        serde_json::json!({"prompt": format!("{long}Q:"), "completion": " yes"}),
        serde_json::json!({"prompt": "Q:", "completion": format!(" {long}")}),
        serde_json::json!({"prompt": "Q:", "completion": " no"}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&data, text).unwrap();
    let recipe = recipe(tmp.path(), &base, "long", "")
        .replace(
            &root()
                .join("datasets/sft/qa-en.train.jsonl")
                .display()
                .to_string(),
            &data.display().to_string(),
        )
        .replace(
            &root()
                .join("datasets/sft/qa-en.val.jsonl")
                .display()
                .to_string(),
            &data.display().to_string(),
        )
        .replace(
            "block_size = 96",
            "block_size = 24\nformat = \"prompt_completion\"",
        );
    let cfg = SftConfig::parse(&recipe, &[]).unwrap();
    let p = manabi_finetune::sft::recipe::prepare(&cfg).unwrap();
    let s = p.train.stats;
    assert_eq!((s.examples, s.truncated, s.dropped), (2, 1, 1), "{s:?}");
    let tok = &p.tokenizer;
    for (e, want) in p.train.examples.iter().zip([" yes", " no"]) {
        // A row of block + 1 tokens gives `block` inputs and targets.
        assert!(e.tokens.len() <= 25, "{}", e.tokens.len());
        // The response and its EOS survive whole, at the end, and are what is trained.
        let trained: Vec<u32> = e
            .tokens
            .iter()
            .zip(&e.trained)
            .filter(|(_, t)| **t)
            .map(|(id, _)| *id)
            .collect();
        let mut response = tok.encode(want).unwrap();
        response.push(p.specials.eos);
        assert_eq!(trained, response);
        assert!(e.tokens.ends_with(&response));
    }
}

#[test]
fn exact_match_scores_the_response_as_the_template_renders_it() {
    // What is trained is what is scored: under `response = " ({answer})"` the gold answer
    // of `{"answer": "Kuku"}` is ` (Kuku)`, not the bare field a model trained on the
    // template never writes.
    let tmp = tempfile::tempdir().unwrap();
    let base = base_model(tmp.path());
    let text = recipe(tmp.path(), &base, "paren", "");
    let val = std::fs::read_to_string(root().join("datasets/sft/qa-en.val.jsonl")).unwrap();
    let answers: Vec<String> = val
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["answer"].to_string())
        .map(|a| a.trim_matches('"').to_string())
        .collect();
    let plain =
        manabi_finetune::sft::recipe::prepare(&SftConfig::parse(&text, &[]).unwrap()).unwrap();
    let want: Vec<String> = answers.iter().map(|a| format!(" {a}")).collect();
    assert_eq!(plain.val.answers, want);
    let over = ["template.response=\" ({answer})\"".to_string()];
    let paren =
        manabi_finetune::sft::recipe::prepare(&SftConfig::parse(&text, &over).unwrap()).unwrap();
    let want: Vec<String> = answers.iter().map(|a| format!(" ({a})")).collect();
    assert_eq!(paren.val.answers, want);
}

#[test]
fn sft_files_with_a_bom_and_crlf_lines_are_read() {
    use manabi_finetune::sft::data::{FieldMap, Format, Record, Source, read_files};
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("bom.jsonl");
    let good = "\u{feff}{\"prompt\":\"Hi\",\"completion\":\" there\"}\r\n\r\n{\"prompt\":\"Yo\",\"completion\":\" you\"}\r\n";
    std::fs::write(&p, good).unwrap();
    let d = read_files(
        std::slice::from_ref(&p),
        Format::Auto,
        &FieldMap::new(),
        false,
    )
    .unwrap();
    let record = |prompt: &str, completion: &str| Record::Fields {
        format: Format::PromptCompletion,
        values: [("prompt", prompt), ("completion", completion)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    assert_eq!(
        d.records,
        vec![record("Hi", " there"), record("Yo", " you")]
    );
    let source = |line: usize| Source {
        path: p.clone(),
        line,
    };
    assert_eq!(d.sources, vec![source(1), source(3)]);
    assert_eq!(d.skipped, 0);
    // A line that is not JSON is named by its physical line, or counted under skip_invalid.
    std::fs::write(&p, format!("{good}{{\"prompt\":\r\n")).unwrap();
    let e = read_files(
        std::slice::from_ref(&p),
        Format::Auto,
        &FieldMap::new(),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("bom.jsonl:4: not valid JSON"), "{e}");
    let d = read_files(
        std::slice::from_ref(&p),
        Format::Auto,
        &FieldMap::new(),
        true,
    )
    .unwrap();
    assert_eq!((d.records.len(), d.skipped), (2, 1));
}
