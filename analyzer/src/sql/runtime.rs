//! The one tokio runtime every command's queries run on.

/// The runtime queries run on, here or as a Ballista scheduler or executor. Workers get 16 MiB
/// stacks: Ballista plans on them, and planning the library's deeper views (`iolatency`:
/// windows over a union over `block_io`) overflows tokio's 2 MiB in a debug build.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(16 << 20)
        .build()?)
}
