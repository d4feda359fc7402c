//! Small string helpers shared by `tokenizer.rs` and `morph.rs` (hex digests, the message
//! of a caught panic): a leaf, so that neither module depends on the other for them.

/// The message of a caught panic.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// Lower-case hexadecimal of `bytes` (two digits a byte).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `f`, turning a panic (of the `tokenizers` library, on a bad file) into a message.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|payload| format!("the tokenizers library panicked: {}", panic_text(&*payload)))
}
