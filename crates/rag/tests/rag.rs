//! Retrieval-augmented generation: passages from JSONL, text and folders; BM25 finds the
//! passage of an English or Japanese question; dense and hybrid retrieval run on a
//! model's embeddings; the index reopens the same; evaluation counts recall@k and exact
//! match with and without retrieval; bad inputs (files, templates, `k = 0`, empty
//! questions or answers, gold passages the index lacks) are one-line errors.

use std::path::{Path, PathBuf};

use manabi_model::DecoderLm;
use manabi_model::device::test_device;
use manabi_rag::{
    self as rag, Embedder, QA_TEMPLATE, Question, RagIndex, Retriever, reciprocal_rank_fusion,
};
use manabi_tasks::embed::Pooling;
use manabi_tokenize::TextTokenizer;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn docs(dir: &Path) -> Vec<PathBuf> {
    let j = dir.join("a.jsonl");
    std::fs::write(
        &j,
        "{\"id\": \"mara\", \"text\": \"Mara lives in Tolven. Mara works as a baker.\"}\n\
         {\"id\": \"tovi\", \"text\": \"Tovi has a cat called Momo. Tovi lives in Harwick.\"}\n\
         {\"id\": \"hoha\", \"text\": \"ホハナは北山町に住んでいます。ホハナの仕事はパン屋です。\"}\n",
    )
    .unwrap();
    let folder = dir.join("more");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("b.txt"),
        "Zemi owns a lamp.\nZemi's favourite colour is blue.\n\nカスミの親友はチメモです。\n",
    )
    .unwrap();
    vec![j, folder]
}

/// A small random LLaMA-style decoder and the English BPE fixture.
fn tiny_generator() -> (DecoderLm, TextTokenizer) {
    let cfg: manabi_model::ModelConfig = toml::from_str(
        "family = \"llama\"\nvocab_size = 512\nmax_positions = 128\nd_model = 32\nn_layers = 2\nn_heads = 4\nn_kv_heads = 2\nd_ff = 64\npositions = \"rope\"\nnorm = \"rmsnorm\"\nactivation = \"swiglu\"\ntie_embeddings = true",
    )
    .unwrap();
    let model = DecoderLm::init(&cfg, &test_device(), 3);
    let tok = TextTokenizer::load(root().join("fixtures/tokenize/bpe-en/tokenizer.json")).unwrap();
    (model, tok)
}

/// The message of `r`'s error, checked to be one line.
fn one_line<T: std::fmt::Debug>(r: Result<T, manabi_finetune::FinetuneError>) -> String {
    let e = r.unwrap_err().to_string();
    assert!(!e.contains('\n'), "not one line: {e}");
    e
}

#[test]
fn bm25_finds_the_passage_in_both_languages_and_the_index_reopens() {
    let tmp = tempfile::tempdir().unwrap();
    let passages = rag::read_passages(&docs(tmp.path())).unwrap();
    assert_eq!(passages.len(), 5);
    assert!(passages[3].id.ends_with("b.txt#1") && passages[3].text.contains("blue"));
    let dir = tmp.path().join("index");
    let built = RagIndex::build(&dir, passages, None).unwrap();
    for (q, want) in [
        ("Where does Mara live?", "mara"),
        ("What is the name of Tovi's cat?", "tovi"),
        ("ホハナはどこに住んでいますか？", "hoha"),
        ("カスミの親友は誰ですか？", "more/b.txt#2"),
        ("What does Zemi own?", "more/b.txt#1"),
    ] {
        for index in [&built, &RagIndex::open(&dir).unwrap()] {
            let top = index.search(q, 2, Retriever::Bm25, None).unwrap();
            assert!(index.passages[top[0]].id.ends_with(want), "{q}: {:?}", top);
        }
    }
    // Dense retrieval needs embeddings.
    let e = built
        .search("Mara", 2, Retriever::Dense, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--retriever"), "{e}");
    let e = RagIndex::open(&tmp.path().join("nothing"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("manabi rag index"), "{e}");
}

#[test]
fn dense_and_hybrid_retrieval_and_evaluation_run_on_a_model() {
    let tmp = tempfile::tempdir().unwrap();
    let device = test_device();
    let (model, tok) = tiny_generator();
    let body = manabi_tasks::embed::SentenceModel::Decoder(Box::new(model.clone()));
    let emb = Embedder {
        model: &body,
        tokenizer: &tok,
        path: tmp.path().join("m"),
        pooling: Pooling::Mean,
        max_length: 64,
        device: &device,
    };
    let dir = tmp.path().join("index");
    let passages = rag::read_passages(&docs(tmp.path())).unwrap();
    let index = RagIndex::build(&dir, passages, Some(&emb)).unwrap();
    let reopened = RagIndex::open(&dir).unwrap();
    assert_eq!(reopened.spec().embed_model, Some(tmp.path().join("m")));
    // A passage is its own nearest neighbour.
    let top = reopened
        .search(
            "Mara lives in Tolven. Mara works as a baker.",
            1,
            Retriever::Dense,
            Some(&emb),
        )
        .unwrap();
    assert_eq!(reopened.passages[top[0]].id, "mara");
    let hybrid = index
        .search("Where does Mara live?", 3, Retriever::Hybrid, Some(&emb))
        .unwrap();
    assert_eq!(hybrid.len(), 3);
    let qs = vec![
        Question {
            question: "Where does Mara live?".into(),
            answer: "Tolven".into(),
            passage: Some("mara".into()),
            source: None,
        },
        Question {
            question: "What is the name of Tovi's cat?".into(),
            answer: "Momo".into(),
            passage: Some("tovi".into()),
            source: None,
        },
    ];
    let (r, rows) = rag::evaluate(
        &index,
        &qs,
        Retriever::Bm25,
        None,
        1,
        1,
        (&model, &tok),
        QA_TEMPLATE,
    )
    .unwrap();
    assert_eq!((r.questions, r.k, r.recall_at_k), (2, 1, Some(1.0)));
    assert!((0.0..=1.0).contains(&r.exact_match_with));
    assert_eq!(rows[0]["retrieved"][0], "mara");
    assert_eq!(
        rag::prompt(QA_TEMPLATE, &["A.", "B."], "Q?").unwrap(),
        "Context: A. B.\nQuestion: Q?\nAnswer:"
    );
}

#[test]
fn fusion_ranks_by_reciprocal_rank_and_bad_files_name_their_line() {
    assert_eq!(
        reciprocal_rank_fusion(&[vec![1, 2, 3], vec![3, 1, 4]], 3),
        vec![1, 3, 2]
    );
    let tmp = tempfile::tempdir().unwrap();
    let q = tmp.path().join("q.jsonl");
    std::fs::write(
        &q,
        "{\"question\": \"a\", \"answer\": \"b\"}\n{\"question\": \"a\"}\n",
    )
    .unwrap();
    let e = rag::read_questions(&q).unwrap_err().to_string();
    assert!(e.contains("q.jsonl:2") && e.contains("answer"), "{e}");
    let d = tmp.path().join("d.jsonl");
    std::fs::write(&d, "{\"text\": \"ok\"}\n{\"id\": 3}\n").unwrap();
    let e = rag::read_passages(std::slice::from_ref(&d))
        .unwrap_err()
        .to_string();
    assert!(e.contains("d.jsonl:2") && e.contains("text"), "{e}");
    // An empty document is an error, never a silently missing passage.
    std::fs::write(&d, "{\"text\": \"ok\"}\n{\"text\": \"  \"}\n").unwrap();
    let e = rag::read_passages(&[d]).unwrap_err().to_string();
    assert!(
        e.contains("d.jsonl:2") && e.contains("empty field `text`"),
        "{e}"
    );
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "\n\n  \n").unwrap();
    let e = rag::read_passages(&[empty]).unwrap_err().to_string();
    assert!(e.contains("empty.txt") && e.contains("no passages"), "{e}");
    let e = rag::read_passages(&[tmp.path().join("missing")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing") && e.contains("no such file"), "{e}");
}

#[test]
fn passage_and_question_files_with_a_bom_and_crlf_lines_are_read() {
    use manabi_rag::Passage;
    let tmp = tempfile::tempdir().unwrap();
    let j = tmp.path().join("p.jsonl");
    std::fs::write(
        &j,
        "\u{feff}{\"id\": \"a\", \"text\": \"Mara bakes.\"}\r\n\r\n{\"text\": \"Tovi reads.\"}\r\n",
    )
    .unwrap();
    let t = tmp.path().join("p.txt");
    std::fs::write(
        &t,
        "\u{feff}Zemi owns a lamp.\r\nIt is blue.\r\n\r\n \r\nKasumi sings.\r\n",
    )
    .unwrap();
    let passage = |id: String, text: &str| Passage {
        id,
        text: text.into(),
    };
    assert_eq!(
        rag::read_passages(&[j.clone(), t.clone()]).unwrap(),
        vec![
            passage("a".into(), "Mara bakes."),
            passage(format!("{}#3", j.display()), "Tovi reads."),
            passage(
                format!("{}#1", t.display()),
                "Zemi owns a lamp.\nIt is blue."
            ),
            passage(format!("{}#2", t.display()), "Kasumi sings."),
        ]
    );
    let q = tmp.path().join("q.jsonl");
    std::fs::write(
        &q,
        "\u{feff}{\"question\": \"Who bakes?\", \"answer\": \"Mara\", \"passage\": \"a\"}\r\n\r\n{\"question\": \"Who reads?\", \"answer\": \"Tovi\"}\r\n",
    )
    .unwrap();
    assert_eq!(
        rag::read_questions(&q).unwrap(),
        vec![
            Question {
                question: "Who bakes?".into(),
                answer: "Mara".into(),
                passage: Some("a".into()),
                source: Some((q.clone(), 1)),
            },
            Question {
                question: "Who reads?".into(),
                answer: "Tovi".into(),
                passage: None,
                source: Some((q.clone(), 3)),
            },
        ]
    );
}

#[test]
fn a_template_without_its_placeholders_is_refused() {
    rag::check_template(QA_TEMPLATE).unwrap();
    for (template, missing) in [
        ("Context: {context}\nAnswer:", "{question}"),
        ("Question: {question}\nAnswer:", "{context}"),
        ("Passages: {passages}\nQ: {question}\nA:", "{context}"),
        ("Answer:", "{question}"),
    ] {
        let e = one_line(rag::prompt(template, &["A."], "Q?"));
        assert!(
            e.contains("--template") && e.contains(&format!("`{missing}`")),
            "{e}"
        );
    }
    // One pass: a passage or question holding a placeholder is not expanded, and other
    // braces stay literal.
    assert_eq!(
        rag::prompt(
            "{\"c\": \"{context}\"} {question} {x}",
            &["see {question}"],
            "Q {context}?"
        )
        .unwrap(),
        "{\"c\": \"see {question}\"} Q {context}? {x}"
    );
    // `rag eval` refuses the template before it retrieves or generates anything.
    let tmp = tempfile::tempdir().unwrap();
    let index = RagIndex::build(
        &tmp.path().join("index"),
        rag::read_passages(&docs(tmp.path())).unwrap(),
        None,
    )
    .unwrap();
    let (model, tok) = tiny_generator();
    let qs = [Question {
        question: "Where does Mara live?".into(),
        answer: "Tolven".into(),
        passage: Some("mara".into()),
        source: None,
    }];
    let e = one_line(rag::evaluate(
        &index,
        &qs,
        Retriever::Bm25,
        None,
        1,
        1,
        (&model, &tok),
        "Q: {question}\nA:",
    ));
    assert!(e.contains("--template") && e.contains("{context}"), "{e}");
}

#[test]
fn zero_passages_and_empty_queries_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let index = RagIndex::build(
        &tmp.path().join("index"),
        rag::read_passages(&docs(tmp.path())).unwrap(),
        None,
    )
    .unwrap();
    for how in [Retriever::Bm25, Retriever::Dense, Retriever::Hybrid] {
        let e = one_line(index.search("Where does Mara live?", 0, how, None));
        assert!(
            e.contains("--k") && e.contains("at least 1"),
            "{how:?}: {e}"
        );
    }
    let e = one_line(index.bm25("Where does Mara live?", 0));
    assert!(e.contains("--k"), "{e}");
    let e = one_line(index.search("  ", 2, Retriever::Bm25, None));
    assert!(e.contains("--question") && e.contains("empty"), "{e}");
    let (model, tok) = tiny_generator();
    let qs = [Question {
        question: "Where does Mara live?".into(),
        answer: "Tolven".into(),
        passage: Some("mara".into()),
        source: None,
    }];
    let eval = |k, context| {
        one_line(rag::evaluate(
            &index,
            &qs,
            Retriever::Bm25,
            None,
            k,
            context,
            (&model, &tok),
            QA_TEMPLATE,
        ))
    };
    let e = eval(0, 1);
    assert!(e.contains("--k") && e.contains("at least 1"), "{e}");
    let e = eval(1, 0);
    assert!(e.contains("--context-passages"), "{e}");
    let e = one_line(rag::evaluate(
        &index,
        &[],
        Retriever::Bm25,
        None,
        1,
        1,
        (&model, &tok),
        QA_TEMPLATE,
    ));
    assert!(e.contains("no questions"), "{e}");
}

#[test]
fn empty_questions_and_answers_name_their_line() {
    let tmp = tempfile::tempdir().unwrap();
    let q = tmp.path().join("q.jsonl");
    let ok = "{\"question\": \"Who bakes?\", \"answer\": \"Mara\"}\n\n";
    for (bad, field) in [
        ("{\"question\": \"  \", \"answer\": \"Mara\"}", "question"),
        ("{\"question\": \"Who bakes?\", \"answer\": \"\"}", "answer"),
        (
            "{\"question\": \"Who bakes?\", \"answer\": \"Mara\", \"passage\": \" \"}",
            "passage",
        ),
    ] {
        std::fs::write(&q, format!("{ok}{bad}\n")).unwrap();
        let e = one_line(rag::read_questions(&q));
        assert!(
            e.contains("q.jsonl:3") && e.contains(&format!("empty field `{field}`")),
            "{e}"
        );
    }
    // Questions built in code are checked by `evaluate` too, named by their number.
    let tmp_index = tmp.path().join("index");
    let index = RagIndex::build(
        &tmp_index,
        rag::read_passages(&docs(tmp.path())).unwrap(),
        None,
    )
    .unwrap();
    let (model, tok) = tiny_generator();
    let q = |question: &str, answer: &str| Question {
        question: question.into(),
        answer: answer.into(),
        passage: None,
        source: None,
    };
    let e = one_line(rag::evaluate(
        &index,
        &[q("Who bakes?", "Mara"), q("Who reads?", " ")],
        Retriever::Bm25,
        None,
        1,
        1,
        (&model, &tok),
        QA_TEMPLATE,
    ));
    assert!(
        e.contains("questions[2]") && e.contains("empty field `answer`"),
        "{e}"
    );
}

#[test]
fn gold_passage_ids_the_index_lacks_name_the_id_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let index = RagIndex::build(
        &tmp.path().join("index"),
        rag::read_passages(&docs(tmp.path())).unwrap(),
        None,
    )
    .unwrap();
    let q = tmp.path().join("q.jsonl");
    std::fs::write(
        &q,
        "{\"question\": \"Where does Mara live?\", \"answer\": \"Tolven\", \"passage\": \"mara\"}\n\
         {\"question\": \"Who has a cat?\", \"answer\": \"Tovi\"}\n\
         {\"question\": \"Where does Nobu live?\", \"answer\": \"Kita\", \"passage\": \"nobu\"}\n",
    )
    .unwrap();
    let questions = rag::read_questions(&q).unwrap();
    let (model, tok) = tiny_generator();
    let e = one_line(rag::evaluate(
        &index,
        &questions,
        Retriever::Bm25,
        None,
        1,
        1,
        (&model, &tok),
        QA_TEMPLATE,
    ));
    assert!(
        e.contains("q.jsonl:3") && e.contains("`nobu`") && e.contains("not in the index"),
        "{e}"
    );
}
