//! Bytes: one definition of what a tracepoint sample stands for in bytes, for `flamegraph
//! --weight bytes`. A tracepoint sampled with stacks (`perfpack-record --stack-event`) keeps
//! its fields in `sample_field`; the first of these that its format has is its size:
//!
//! | field | events that carry it |
//! |---|---|
//! | `bytes` | `block:block_rq_insert`, `block_rq_issue`, `block_bio_*` … |
//! | `bytes_alloc` | `kmem:kmalloc`, `kmem_cache_alloc` … (what the allocator gave) |
//! | `len` | `net:net_dev_xmit`, `net:netif_receive_skb`, `syscalls:sys_enter_mmap` … |
//! | `count` | `syscalls:sys_enter_write`, `sys_enter_read` … (bytes asked for) |
//! | `nr_sector` × 512 | `block:block_rq_complete` and older kernels' block events |
//!
//! A sample stands for its period's events, so its bytes are the field times its weight (the
//! field of the one hit sampled; exact with the default period of 1).

/// SQL expression over a `sample_field` row aliased `f`: the bytes of the hit, NULL when its
/// event has none of the fields.
pub const FIELD_BYTES_SQL: &str = "COALESCE(f.int_fields['bytes'], f.int_fields['bytes_alloc'], \
     f.int_fields['len'], f.int_fields['count'], f.int_fields['nr_sector'] * 512)";

/// The fields `FIELD_BYTES_SQL` reads, in its order, for messages.
pub const BYTE_FIELDS: &str = "bytes, bytes_alloc, len, count or nr_sector";

/// A relation with every `stack_sample` column and `bytes`, the bytes each sample stands for
/// (its weight × its hit's byte field), of the samples that have one.
pub fn samples_with_bytes() -> String {
    format!(
        "SELECT * FROM (SELECT s.*, s.weight * {FIELD_BYTES_SQL} AS bytes FROM stack_sample s \
         JOIN sample_field f ON s.bundle = f.bundle AND s.ts_ns = f.ts_ns AND s.cpu = f.cpu \
         AND s.tid = f.tid AND s.event = f.event) WHERE bytes IS NOT NULL"
    )
}
