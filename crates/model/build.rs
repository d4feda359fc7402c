//! With the `mkl` feature, links Intel MKL's single dynamic library (`libmkl_rt.so*`),
//! found in `MKL_LIB_DIR` or in the `lib` folder of the `python3` on `PATH` (where
//! `pip install mkl-devel` puts it); the binary then needs that folder on
//! `LD_LIBRARY_PATH`.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=MKL_LIB_DIR");
    if std::env::var_os("CARGO_FEATURE_MKL").is_none() {
        return;
    }
    let dirs: Vec<PathBuf> = std::env::var_os("MKL_LIB_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain(python_lib())
        .collect();
    let found = dirs.iter().find_map(|d| mkl_rt(d).map(|f| (d.clone(), f)));
    let Some((dir, file)) = found else {
        panic!(
            "feature `mkl`: no libmkl_rt.so* in {dirs:?}; `pip install mkl-devel` or set MKL_LIB_DIR"
        );
    };
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=dylib:+verbatim={file}");
}

/// `<prefix>/lib` of the `python3` on `PATH`.
fn python_lib() -> Option<PathBuf> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.prefix)"])
        .output()
        .ok()?;
    let prefix = String::from_utf8(out.stdout).ok()?;
    Some(Path::new(prefix.trim()).join("lib"))
}

/// The name of the `libmkl_rt.so*` file in `dir`, the unversioned one first.
fn mkl_rt(dir: &Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("libmkl_rt.so"))
        .collect();
    names.sort_by_key(|n| n.len());
    names.into_iter().next()
}
