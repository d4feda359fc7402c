//! Retrieval-augmented generation: passages from JSONL, text and folders; BM25 finds the
//! passage of an English or Japanese question; dense and hybrid retrieval run on a
//! model's embeddings; the index reopens the same; evaluation counts recall@k and exact
//! match with and without retrieval; bad inputs are one-line errors.

use std::path::{Path, PathBuf};

use manabi_finetune::tasks::embed::Pooling;
use manabi_finetune::tasks::rag::{
    self, Embedder, QA_TEMPLATE, Question, RagIndex, Retriever, reciprocal_rank_fusion,
};
use manabi_model::DecoderLm;
use manabi_model::device::test_device;
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
    let cfg: manabi_model::ModelConfig = toml::from_str(
        "family = \"llama\"\nvocab_size = 512\nmax_positions = 128\nd_model = 32\nn_layers = 2\nn_heads = 4\nn_kv_heads = 2\nd_ff = 64\npositions = \"rope\"\nnorm = \"rmsnorm\"\nactivation = \"swiglu\"\ntie_embeddings = true",
    )
    .unwrap();
    let model = DecoderLm::init(&cfg, &device, 3);
    let tok = TextTokenizer::load(root().join("fixtures/tokenize/bpe-en/tokenizer.json")).unwrap();
    let body = manabi_finetune::tasks::embed::SentenceModel::Decoder(Box::new(model.clone()));
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
        },
        Question {
            question: "What is the name of Tovi's cat?".into(),
            answer: "Momo".into(),
            passage: Some("tovi".into()),
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
        rag::prompt(QA_TEMPLATE, &["A.", "B."], "Q?"),
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
    use manabi_finetune::tasks::rag::Passage;
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
            },
            Question {
                question: "Who reads?".into(),
                answer: "Tovi".into(),
                passage: None,
            },
        ]
    );
}
