//! A config that cannot belong to its weights (a typo such as `n_layer = 65535`) is one
//! error naming the file, raised before any memory is allocated for the model it
//! describes — not an out-of-memory abort.

use std::path::{Path, PathBuf};

use manabi_model::device::test_device;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_hugging_face_config_far_larger_than_its_weights_is_refused() {
    let device = test_device();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gpt2");
    copy_dir(&fixture("gpt2"), &dir);
    manabi_model::load_hf(&dir, &device).unwrap();
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    for (key, huge) in [
        ("\"n_layer\": 2", "\"n_layer\": 65535"),
        ("\"n_embd\": 32", "\"n_embd\": 4194304"),
        ("\"vocab_size\": 64", "\"vocab_size\": 4000000000"),
    ] {
        assert!(cfg.contains(key), "{key}");
        std::fs::write(dir.join("config.json"), cfg.replace(key, huge)).unwrap();
        let err = manabi_model::load_hf(&dir, &device)
            .map(drop)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.safetensors: config.json describes a model of about")
                && err.contains("the config does not belong to these weights"),
            "{huge}: {err}"
        );
    }
}

#[test]
fn a_model_toml_far_larger_than_model_bpk_is_refused() {
    let device = test_device();
    let tmp = tempfile::tempdir().unwrap();
    let model = manabi_model::load_hf(fixture("gpt2"), &device).unwrap();
    let dir = tmp.path().join("native");
    manabi_model::save_native(&model, &dir).unwrap();
    let toml = std::fs::read_to_string(dir.join("model.toml")).unwrap();
    std::fs::write(
        dir.join("model.toml"),
        toml.replace("n_layers = 2", "n_layers = 65535"),
    )
    .unwrap();
    let err = manabi_model::load_native(&dir, &device)
        .map(drop)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.toml: describes a model of about")
            && err.contains("does not belong to these weights"),
        "{err}"
    );
}
