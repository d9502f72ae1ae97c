//! An object store over opened bundles, so DataFusion reads segment files in place: files of a
//! bundle directory, or byte ranges of a packed bundle (never extracted). The store shows every
//! bundle's segments in the Hive-partitioned layout of DESIGN §5,
//! `<table>/host=<host>/bundle=<bundle>/seg-NNNNNN.parquet`, so one listing table per bundle
//! table gets `host` and `bundle` columns from the paths.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::{self, BoxStream};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use parquet::file::reader::{ChunkReader as _, Length as _};
use perfpack_schema::SegmentData;

/// Read-only store of segment files keyed by their virtual path.
#[derive(Debug, Default)]
pub struct BundleStore {
    objects: BTreeMap<Path, SegmentData>,
    /// Segments whose pages were not walked when their bundle was opened (bundles read in
    /// place from an object store): their footers, and the leaves checked so far.
    unchecked: std::sync::Mutex<BTreeMap<Path, Checked>>,
}

#[derive(Debug, Default)]
struct Checked {
    footer: Option<std::sync::Arc<parquet::file::metadata::ParquetMetaData>>,
    leaves: std::collections::BTreeSet<usize>,
}

impl BundleStore {
    /// Adds a segment under its virtual path; `checked` says whether its pages were walked
    /// already (else each column chunk is checked when it is first fetched).
    pub fn insert(&mut self, path: Path, data: SegmentData, checked: bool) {
        if !checked {
            self.unchecked
                .get_mut()
                .expect("not poisoned")
                .insert(path.clone(), Checked::default());
        }
        self.objects.insert(path, data);
    }

    /// Checks the pages of the column chunks `range` overlaps, once each, where the segment's
    /// pages were not walked at open: DataFusion decodes what it fetches without the checks.
    fn check(
        &self,
        path: &Path,
        data: &SegmentData,
        range: &Range<u64>,
    ) -> object_store::Result<()> {
        let generic = |e: perfpack_schema::Error| object_store::Error::Generic {
            store: "perfpack",
            source: Box::new(e),
        };
        let mut unchecked = self.unchecked.lock().unwrap_or_else(|e| e.into_inner());
        let Some(c) = unchecked.get_mut(path) else {
            return Ok(());
        };
        let footer = match &c.footer {
            Some(f) => f.clone(),
            None => c.footer.insert(data.footer().map_err(generic)?).clone(),
        };
        // The footer's own bytes (at the end) overlap no chunk: nothing to check there.
        data.check_range(&footer, range.clone(), &mut c.leaves)
            .map_err(generic)
    }

    fn meta(path: &Path, data: &SegmentData) -> ObjectMeta {
        ObjectMeta {
            location: path.clone(),
            last_modified: chrono::DateTime::UNIX_EPOCH,
            size: data.len(),
            e_tag: None,
            version: None,
        }
    }

    fn lookup(&self, path: &Path) -> object_store::Result<&SegmentData> {
        self.objects
            .get(path)
            .ok_or_else(|| object_store::Error::NotFound {
                path: path.to_string(),
                source: "no such segment in the opened bundles".into(),
            })
    }

    fn read(data: &SegmentData, range: Range<u64>) -> object_store::Result<Bytes> {
        let len = (range.end - range.start) as usize;
        data.get_bytes(range.start, len)
            .map_err(|e| object_store::Error::Generic {
                store: "perfpack",
                source: format!("{}: {e}", data.display_path().display()).into(),
            })
    }

    fn under<'a>(
        &'a self,
        prefix: Option<&'a Path>,
    ) -> impl Iterator<Item = (&'a Path, &'a SegmentData)> {
        self.objects.iter().filter(move |(p, _)| match prefix {
            None => true,
            Some(pre) => p.prefix_match(pre).is_some(),
        })
    }
}

impl fmt::Display for BundleStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BundleStore({} segments)", self.objects.len())
    }
}

fn read_only(operation: &str) -> object_store::Error {
    object_store::Error::NotImplemented {
        operation: operation.to_string(),
        implementer: "perfpack bundles are read-only".to_string(),
    }
}

#[async_trait]
impl ObjectStore for BundleStore {
    async fn put_opts(
        &self,
        _location: &Path,
        _payload: PutPayload,
        _opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        Err(read_only("put"))
    }

    async fn put_multipart_opts(
        &self,
        _location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(read_only("put_multipart"))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let data = self.lookup(location)?;
        let meta = Self::meta(location, data);
        let range = match &options.range {
            None => 0..data.len(),
            Some(r) => r
                .as_range(data.len())
                .map_err(|e| object_store::Error::Generic {
                    store: "perfpack",
                    source: Box::new(e),
                })?,
        };
        let payload = if options.head {
            stream::empty().boxed()
        } else {
            self.check(location, data, &range)?;
            let bytes = Self::read(data, range.clone())?;
            stream::once(async move { Ok(bytes) }).boxed()
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(payload),
            meta,
            range,
            attributes: Default::default(),
        })
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let data = self.lookup(location)?;
        for r in ranges {
            self.check(location, data, r)?;
        }
        ranges.iter().map(|r| Self::read(data, r.clone())).collect()
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        locations.map(|_| Err(read_only("delete"))).boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let metas: Vec<_> = self
            .under(prefix)
            .map(|(p, d)| Ok(Self::meta(p, d)))
            .collect();
        stream::iter(metas).boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let depth = prefix.map_or(0, |p| p.parts().count());
        let mut common_prefixes = Vec::new();
        let mut objects = Vec::new();
        for (path, data) in self.under(prefix) {
            let parts: Vec<_> = path.parts().collect();
            if parts.len() == depth + 1 {
                objects.push(Self::meta(path, data));
            } else if parts.len() > depth + 1 {
                let dir = Path::from_iter(parts[..=depth].iter().cloned());
                if common_prefixes.last() != Some(&dir) {
                    common_prefixes.push(dir);
                }
            }
        }
        common_prefixes.dedup();
        Ok(ListResult {
            common_prefixes,
            objects,
        })
    }

    async fn copy_opts(
        &self,
        _from: &Path,
        _to: &Path,
        _options: CopyOptions,
    ) -> object_store::Result<()> {
        Err(read_only("copy"))
    }
}
