//! Bytes of files the recorder parses in place (ELF files for unwinding and debug info): mapped
//! from disk, or owned (a decompressed section, the fuzz target's input), and shared slices of
//! them that the unwinder and gimli read without copying.

use std::ops::{Deref, Range};
use std::sync::Arc;

use crate::sys::MappedFile;

/// The bytes of a file: mapped from disk, or owned.
#[derive(Debug)]
pub enum FileBytes {
    Mapped(MappedFile),
    Owned(Vec<u8>),
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Owned(v) => v,
        }
    }
}

/// A slice of a shared file's bytes.
#[derive(Clone, Debug)]
pub struct Section {
    file: Arc<FileBytes>,
    range: Range<usize>,
}

impl Section {
    /// `range` of `file`; the caller checks that it lies inside.
    pub fn new(file: &Arc<FileBytes>, range: Range<usize>) -> Section {
        debug_assert!(range.end <= file.len());
        Section {
            file: Arc::clone(file),
            range,
        }
    }

    /// A whole owned buffer.
    pub fn owned(bytes: Vec<u8>) -> Section {
        let len = bytes.len();
        Section {
            file: Arc::new(FileBytes::Owned(bytes)),
            range: 0..len,
        }
    }
}

impl Deref for Section {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.file[self.range.clone()]
    }
}

// SAFETY: the bytes live behind an `Arc` (a mapping or a heap buffer that is never resized), so
// they stay where they are however a `Section` is moved or cloned.
unsafe impl stable_deref_trait::StableDeref for Section {}
// SAFETY: as above; a clone points at the same bytes.
unsafe impl stable_deref_trait::CloneStableDeref for Section {}
