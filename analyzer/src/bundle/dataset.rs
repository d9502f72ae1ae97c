//! Fleet datasets: the tables of many bundles laid out as one Hive-partitioned Parquet dataset
//! in a directory or a store (DESIGN §5), which DataFusion, Ballista, Spark, Trino and DuckDB
//! read unchanged:
//!
//! ```text
//! <table>/host=<host>/bundle=<name>/seg-000000.parquet    the bundle's segment files, as recorded
//! bundles/host=<host>/bundle=<name>/bundle.parquet        one row: the manifest's summary and JSON
//! bundles/host=<host>/bundle=<name>/_manifest.json        the manifest (engines skip `_` files)
//! ```
//!
//! `<name>` is the name a session over the bundle files gives (`bundle` column: the file name
//! without `.ppk`), `<host>` its hostname made path-safe, so a query over the dataset and one
//! over the bundles see the same `bundle` and `host` values. Segment files are copied byte for
//! byte, never rewritten. The manifest is written last: a bundle whose export was interrupted
//! has no `_manifest.json` and is not a member, and exporting it again finishes the job. The
//! listing tables do not look at membership: a query that runs while a bundle is exported can
//! see its new segment files before its `bundles` row.
//!
//! A member bundle opens as a bundle ([`DatasetBundle`]), so every command that takes bundles
//! takes a dataset: `perfpack fleet DATASET` ranks its members.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use futures::TryStreamExt as _;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::file::reader::{ChunkReader as _, Length as _};
use perfpack_schema::{Bundle, MANIFEST_FILE, RandomAccess, RemoteBundle, SegmentData, tables};

use super::block_rq::{PairsInput, StoredSegment};
use super::location::{self, StoreObject, StoreUrl, block};

/// The table of manifests.
pub const BUNDLES_TABLE: &str = "bundles";
/// A member's manifest, beside its `bundles` row.
const MANIFEST_OBJECT: &str = "_manifest.json";
/// A member's `bundles` row.
const BUNDLE_FILE: &str = "bundle.parquet";

/// A bundle of a dataset, by its partition values.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    pub host: String,
    pub bundle: String,
}

/// A dataset's root: a directory or a store prefix.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// As the user wrote it, for messages.
    name: String,
    at: StoreUrl,
}

/// The columns of the `bundles` table (beside the `host` and `bundle` partition columns).
pub fn bundles_schema() -> SchemaRef {
    let f = |n: &str, t: DataType, null: bool| Field::new(n, t, null);
    Arc::new(Schema::new(vec![
        f("bundle_id", DataType::Utf8, false),
        f("hostname", DataType::Utf8, false),
        f("kernel_release", DataType::Utf8, false),
        f("arch", DataType::Utf8, false),
        f("cpu_model_name", DataType::Utf8, true),
        f("n_cpus", DataType::UInt32, false),
        f("instance_type", DataType::Utf8, true),
        f("state", DataType::Utf8, false),
        f("start_wall_ns", DataType::Int64, false),
        f("end_wall_ns", DataType::Int64, true),
        f("recorder_version", DataType::Utf8, false),
        f("rows", DataType::Int64, false),
        f("manifest", DataType::Utf8, false),
    ]))
}

/// Whether a local directory looks like a dataset root (a `bundles/` directory and no
/// manifest of its own).
pub fn is_local_dataset(path: &std::path::Path) -> bool {
    path.join(BUNDLES_TABLE).is_dir() && !path.join(MANIFEST_FILE).exists()
}

impl Dataset {
    /// The dataset at a directory or URL (which need not exist yet).
    pub fn at(arg: &str) -> anyhow::Result<Dataset> {
        let at = if location::is_url(arg) {
            location::parse(arg)?
        } else {
            location::local(std::path::Path::new(arg))?
        };
        Ok(Dataset {
            name: arg.trim_end_matches('/').to_string(),
            at,
        })
    }

    /// The dataset's store and root.
    /// The dataset as the user wrote it, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn store_url(&self) -> &StoreUrl {
        &self.at
    }

    /// `<table>/host=<host>/bundle=<bundle>` below the root.
    fn partition(&self, table: &str, m: &Member) -> StorePath {
        self.at
            .prefix
            .clone()
            .join(table)
            .join(format!("host={}", m.host))
            .join(format!("bundle={}", m.bundle))
    }

    /// The URL (with a trailing `/`) a listing table of `table` reads.
    pub fn table_url(&self, table: &str) -> String {
        format!("{}/", self.at.url_of(&self.at.prefix.clone().join(table)))
    }

    /// How a member is named in messages and bundle lists: `DATASET/bundles/host=H/bundle=B`.
    pub fn member_path(&self, m: &Member) -> PathBuf {
        PathBuf::from(format!(
            "{}/{BUNDLES_TABLE}/host={}/bundle={}",
            self.name, m.host, m.bundle
        ))
    }

    fn list(&self, under: StorePath) -> anyhow::Result<Vec<object_store::ObjectMeta>> {
        let store = Arc::clone(&self.at.store);
        let what = under.to_string();
        let metas = block(async move { store.list(Some(&under)).try_collect::<Vec<_>>().await })
            .with_context(|| format!("{}: listing {what}", self.name))?;
        location::count(0);
        Ok(metas)
    }

    /// The `host=`/`bundle=` values of an object below `<root>/<table>/`.
    fn member_of(&self, path: &StorePath) -> Option<Member> {
        let parts: Vec<String> = path
            .parts()
            .skip(self.at.prefix.parts().count() + 1)
            .map(|p| p.as_ref().to_string())
            .collect();
        match parts.as_slice() {
            [h, b, _file] => Some(Member {
                host: h.strip_prefix("host=")?.to_string(),
                bundle: b.strip_prefix("bundle=")?.to_string(),
            }),
            _ => None,
        }
    }

    /// The bundles that were exported completely, sorted by host and name.
    pub fn members(&self) -> anyhow::Result<Vec<Member>> {
        let metas = self.list(self.at.prefix.clone().join(BUNDLES_TABLE))?;
        let mut out: Vec<Member> = metas
            .iter()
            .filter(|m| m.location.filename() == Some(MANIFEST_OBJECT))
            .filter_map(|m| self.member_of(&m.location))
            .collect();
        out.sort();
        Ok(out)
    }

    /// The members, refusing a location that holds none.
    pub fn members_or_fail(&self) -> anyhow::Result<Vec<Member>> {
        let members = self.members()?;
        if members.is_empty() {
            bail!(
                "{}: not a perfpack dataset (no {BUNDLES_TABLE}/host=*/bundle=*/{MANIFEST_OBJECT}); \
                 write one with `perfpack export --dataset`",
                self.name
            );
        }
        Ok(members)
    }

    /// Opens a member as a bundle.
    pub fn bundle(&self, m: &Member) -> anyhow::Result<Bundle> {
        let remote = Arc::new(DatasetBundle {
            dataset: self.clone(),
            member: m.clone(),
        });
        Ok(Bundle::open_remote(self.member_path(m), remote)?)
    }

    /// The `block_rq` segments of the members, from one listing, for `block_rq_pairs`.
    pub fn pairs_inputs(&self, members: &[Member]) -> anyhow::Result<Vec<PairsInput>> {
        let wanted: BTreeSet<&Member> = members.iter().collect();
        let mut by_member: BTreeMap<Member, Vec<object_store::ObjectMeta>> = BTreeMap::new();
        for meta in self.list(self.at.prefix.clone().join(tables::BLOCK_RQ.name))? {
            if !meta.location.as_ref().ends_with(".parquet") {
                continue;
            }
            if let Some(m) = self.member_of(&meta.location)
                && wanted.contains(&m)
            {
                by_member.entry(m).or_default().push(meta);
            }
        }
        Ok(by_member
            .into_iter()
            .map(|(m, mut metas)| {
                metas.sort_by(|a, b| a.location.cmp(&b.location));
                let stored: Vec<StoredSegment> = metas
                    .iter()
                    .map(|meta| StoredSegment {
                        url: self.at.url_of(&meta.location),
                        size: meta.size,
                    })
                    .collect();
                let segments = metas
                    .into_iter()
                    .zip(&stored)
                    .map(|(meta, s)| {
                        let object = StoreObject::sized(&self.at.store, &meta.location, meta.size);
                        SegmentData::new(Arc::new(object), PathBuf::from(&s.url))
                    })
                    .collect();
                PairsInput {
                    segments,
                    bundle: m.bundle,
                    host: m.host,
                    stored,
                    pages_checked: false,
                }
            })
            .collect())
    }

    fn put(&self, path: &StorePath, bytes: Bytes) -> anyhow::Result<()> {
        let (store, p) = (Arc::clone(&self.at.store), path.clone());
        block(async move { store.put(&p, PutPayload::from(bytes)).await })
            .with_context(|| format!("{}: writing {path}", self.name))?;
        Ok(())
    }

    fn delete(&self, path: &StorePath) -> anyhow::Result<()> {
        let (store, p) = (Arc::clone(&self.at.store), path.clone());
        match block(async move { store.delete(&p).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("{}: deleting {path}", self.name)),
        }
    }

    fn read_manifest(&self, m: &Member) -> anyhow::Result<Option<perfpack_schema::Manifest>> {
        let path = self.partition(BUNDLES_TABLE, m).join(MANIFEST_OBJECT);
        let Some(object) = StoreObject::open(&self.at.store, &path)? else {
            return Ok(None);
        };
        let mut buf = vec![0u8; object.len() as usize];
        object.read_exact_at(&mut buf, 0)?;
        let shown = PathBuf::from(self.at.url_of(&path));
        Ok(Some(perfpack_schema::Manifest::parse(&buf, &shown)?))
    }

    /// Writes one bundle into the dataset as `m`, replacing what an earlier export of it left.
    /// Returns the files and bytes written.
    pub fn export_one(&self, bundle: &Bundle, m: &Member) -> anyhow::Result<(usize, u64)> {
        let manifest = bundle.manifest();
        if let Some(old) = self.read_manifest(m)?
            && old.bundle_id != manifest.bundle_id
        {
            bail!(
                "{}: already holds bundle {} as host={} bundle={}, not {} ({}); rename one of \
                 the two bundle files",
                self.name,
                old.bundle_id,
                m.host,
                m.bundle,
                manifest.bundle_id,
                bundle.path().display()
            );
        }
        // What an earlier export left: removed after the new files are in, so a reader never
        // finds a segment missing that both exports have.
        let mut stale = BTreeSet::new();
        for table in tables::ALL.iter().map(|t| t.name).chain([BUNDLES_TABLE]) {
            for meta in self.list(self.partition(table, m))? {
                stale.insert(meta.location);
            }
        }
        let manifest_path = self.partition(BUNDLES_TABLE, m).join(MANIFEST_OBJECT);
        // Not a member while its files change.
        self.delete(&manifest_path)?;
        stale.remove(&manifest_path);

        let (mut files, mut bytes) = (0usize, 0u64);
        for table in tables::ALL {
            for seg in bundle.segments(table) {
                let data = bundle.segment_data(seg)?;
                let file = seg.file.rsplit('/').next().unwrap_or(&seg.file);
                let path = self.partition(table.name, m).join(file);
                let content = data
                    .get_bytes(0, data.len() as usize)
                    .with_context(|| format!("{}", bundle.display_path(seg).display()))?;
                bytes += content.len() as u64;
                self.put(&path, content)?;
                stale.remove(&path);
                files += 1;
            }
        }
        let row = bundles_row(bundle)?;
        let row_path = self.partition(BUNDLES_TABLE, m).join(BUNDLE_FILE);
        bytes += row.len() as u64;
        self.put(&row_path, row)?;
        stale.remove(&row_path);
        for path in &stale {
            self.delete(path)?;
        }
        let json = Bytes::from(manifest.to_json().into_bytes());
        bytes += json.len() as u64;
        self.put(&manifest_path, json)?;
        Ok((files + 2, bytes))
    }
}

/// The `bundles` row of a bundle, as one small zstd Parquet file.
fn bundles_row(bundle: &Bundle) -> anyhow::Result<Bytes> {
    let m = bundle.manifest();
    let rows: u64 = m.tables.values().map(|t| t.rows).sum();
    let s = |v: &str| Arc::new(StringArray::from(vec![v])) as ArrayRef;
    let opt = |v: Option<&str>| Arc::new(StringArray::from(vec![v])) as ArrayRef;
    let schema = bundles_schema();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            s(&m.bundle_id),
            s(&m.host.hostname),
            s(&m.host.kernel_release),
            s(&m.host.arch),
            opt(m.host.cpu_model_name.as_deref()),
            Arc::new(UInt32Array::from(vec![m.host.n_cpus])),
            opt(m.host.instance_type.as_deref()),
            s(m.state.as_str()),
            Arc::new(Int64Array::from(vec![m.clocks.start.realtime_ns])),
            Arc::new(Int64Array::from(vec![
                m.clocks.end.as_ref().map(|e| e.realtime_ns),
            ])),
            s(&m.recorder.version),
            Arc::new(Int64Array::from(vec![rows as i64])),
            s(&m.to_json()),
        ],
    )?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema, Some(props))?;
    w.write(&batch)?;
    w.close()?;
    Ok(Bytes::from(out))
}

/// A dataset member read as a bundle: `manifest.json` is the member's `_manifest.json`,
/// `tables/<t>/<file>` is `<t>/host=<h>/bundle=<b>/<file>`.
#[derive(Debug)]
struct DatasetBundle {
    dataset: Dataset,
    member: Member,
}

impl RemoteBundle for DatasetBundle {
    fn open(&self, name: &str) -> std::io::Result<Option<Arc<dyn RandomAccess>>> {
        let path = if name == MANIFEST_FILE {
            self.dataset
                .partition(BUNDLES_TABLE, &self.member)
                .join(MANIFEST_OBJECT)
        } else if let Some((table, file)) = name
            .strip_prefix("tables/")
            .and_then(|rest| rest.split_once('/'))
            .filter(|(_, f)| !f.contains('/'))
        {
            self.dataset.partition(table, &self.member).join(file)
        } else {
            // Not part of a dataset member (a packed bundle's whole object, say).
            return Ok(None);
        };
        Ok(StoreObject::open(&self.dataset.at.store, &path)?
            .map(|o| Arc::new(o) as Arc<dyn RandomAccess>))
    }

    fn list(&self, _prefix: &str) -> std::io::Result<Vec<String>> {
        // Only the manifest's segments are exported: there are no unlisted files to warn of.
        Ok(Vec::new())
    }
}
