//! Bundles and datasets that lie in object storage: `s3://bucket/prefix` (and `file://`)
//! locations, through the `object_store` crate DataFusion uses. Credentials and region come
//! from the usual AWS environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION`, `AWS_SESSION_TOKEN`, ...); `--endpoint` (or `AWS_ENDPOINT_URL`/`AWS_ENDPOINT`)
//! points at an S3-compatible store.
//!
//! Bundle readers take bytes through [`perfpack_schema::RandomAccess`], which is synchronous:
//! [`StoreObject`] runs each ranged GET on a runtime of its own and waits for it, so readers
//! work the same from plain threads and from inside DataFusion's runtime. Nothing is
//! downloaded whole: reads are ranged, and small reads (footers, page headers, ZIP headers)
//! go through a small cache of aligned blocks so that neighbouring ones cost one request.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use futures::TryStreamExt as _;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt as _};
use perfpack_schema::{RandomAccess, RemoteBundle};
use url::Url;

/// `--endpoint`, set once by `main` before any store is made.
static ENDPOINT: OnceLock<String> = OnceLock::new();

/// Requests and bytes fetched from stores by this process (`PERFPACK_STORE_STATS=1` prints them).
static REQUESTS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

/// Sets the S3 endpoint for every store made after this.
pub fn set_endpoint(endpoint: Option<String>) {
    if let Some(e) = endpoint {
        let _ = ENDPOINT.set(e);
    }
}

/// Whether an argument is a URL this module opens rather than a local path.
pub fn is_url(arg: &str) -> bool {
    ["s3://", "s3a://", "file://"]
        .iter()
        .any(|s| arg.starts_with(s))
}

/// Counts one request of `bytes` bytes (also called for DataFusion's reads of a store).
pub fn count(bytes: u64) {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    BYTES.fetch_add(bytes, Ordering::Relaxed);
}

/// (requests, bytes) fetched from object stores so far.
pub fn stats() -> (u64, u64) {
    (
        REQUESTS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    )
}

/// Prints the fetch counters to stderr when `PERFPACK_STORE_STATS` is set and anything was
/// fetched.
pub fn print_stats() {
    let (requests, bytes) = stats();
    if requests > 0 && std::env::var_os("PERFPACK_STORE_STATS").is_some() {
        eprintln!("perfpack: object store: {requests} requests, {bytes} bytes");
    }
}

/// The runtime that store requests run on (two threads; the requests wait on the network).
fn io_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("perfpack-store")
            .enable_all()
            .build()
            .expect("a tokio runtime for object store requests")
    })
}

/// Runs `fut` on the store runtime and waits for it, from any thread (inside another runtime
/// too: the waiting thread only blocks).
pub fn block<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    io_runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().expect("the store runtime finished the request")
}

/// A store and a prefix in it, from a URL.
#[derive(Debug, Clone)]
pub struct StoreUrl {
    pub store: Arc<dyn ObjectStore>,
    /// The store's own URL (`s3://bucket`, `file:///`), under which DataFusion registers it.
    pub root: Url,
    pub prefix: StorePath,
}

impl StoreUrl {
    /// The URL of an object or prefix below this one.
    pub fn url_of(&self, path: &StorePath) -> String {
        format!("{}/{}", self.root.as_str().trim_end_matches('/'), path)
    }
}

/// Opens the store a URL names (one client per bucket) and the prefix in it.
pub fn parse(arg: &str) -> anyhow::Result<StoreUrl> {
    let url = Url::parse(arg).with_context(|| format!("{arg}: not a URL"))?;
    match url.scheme() {
        "s3" | "s3a" => {
            let bucket = url
                .host_str()
                .filter(|b| !b.is_empty())
                .with_context(|| format!("{arg}: no bucket"))?
                .to_string();
            let store = s3_store(&bucket).with_context(|| arg.to_string())?;
            let root = Url::parse(&format!("{}://{bucket}", url.scheme()))?;
            let prefix = StorePath::from_url_path(url.path())
                .with_context(|| format!("{arg}: bad object path"))?;
            Ok(StoreUrl {
                store,
                root,
                prefix,
            })
        }
        "file" => local(&file_path(arg)?),
        other => bail!("{arg}: unsupported scheme {other}:// (s3:// or file://)"),
    }
}

/// The local path a `file://` URL names.
pub fn file_path(arg: &str) -> anyhow::Result<std::path::PathBuf> {
    Url::parse(arg)
        .with_context(|| format!("{arg}: not a URL"))?
        .to_file_path()
        .map_err(|()| anyhow::anyhow!("{arg}: not a local file URL"))
}

/// A local directory as a store (datasets are written and read through the same code).
pub fn local(path: &std::path::Path) -> anyhow::Result<StoreUrl> {
    let abs = std::path::absolute(path).with_context(|| format!("{}", path.display()))?;
    let prefix = StorePath::from_absolute_path(&abs)
        .with_context(|| format!("{}: not a usable path", path.display()))?;
    Ok(StoreUrl {
        store: Arc::new(object_store::local::LocalFileSystem::new()),
        root: Url::parse("file:///").expect("file URL"),
        prefix,
    })
}

fn s3_store(bucket: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
    static STORES: Mutex<Option<HashMap<String, Arc<dyn ObjectStore>>>> = Mutex::new(None);
    let mut stores = STORES.lock().unwrap_or_else(|e| e.into_inner());
    let stores = stores.get_or_insert_with(HashMap::new);
    if let Some(s) = stores.get(bucket) {
        return Ok(Arc::clone(s));
    }
    // object_store's default retries a refused connection 10 times over ~8 s of back-off;
    // an analyzer pointed at a wrong endpoint should say so within a second or two, while
    // a throttled or briefly failing store still gets a few retries.
    let retry = object_store::RetryConfig {
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(30),
        ..Default::default()
    };
    let mut builder = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry);
    let connect =
        object_store::aws::AmazonS3ConfigKey::Client(object_store::ClientConfigKey::ConnectTimeout);
    if builder.get_config_value(&connect).is_none() {
        builder = builder.with_config(connect, "5s");
    }
    let endpoint = ENDPOINT
        .get()
        .cloned()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
    if let Some(e) = endpoint {
        builder = builder
            .with_allow_http(e.starts_with("http://"))
            .with_endpoint(e);
    }
    let store: Arc<dyn ObjectStore> = Arc::new(builder.build()?);
    stores.insert(bucket.to_string(), Arc::clone(&store));
    Ok(store)
}

/// An object read in place with ranged requests.
#[derive(Debug)]
pub struct StoreObject {
    store: Arc<dyn ObjectStore>,
    path: StorePath,
    len: u64,
    /// Recently read blocks (index, bytes), newest last.
    blocks: Mutex<Vec<(u64, Bytes)>>,
}

/// Reads smaller than this go through the block cache.
const BLOCK: u64 = 16 * 1024;
/// Blocks kept per object.
const BLOCKS_KEPT: usize = 64;

impl StoreObject {
    /// Opens `path` (one HEAD request); `None` when there is no such object.
    pub fn open(store: &Arc<dyn ObjectStore>, path: &StorePath) -> io::Result<Option<Self>> {
        let (s, p) = (Arc::clone(store), path.clone());
        match block(async move { s.head(&p).await }) {
            Ok(meta) => {
                count(0);
                Ok(Some(Self::sized(store, path, meta.size)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io::Error::other(e)),
        }
    }

    /// An object whose size a listing gave (no request).
    pub fn sized(store: &Arc<dyn ObjectStore>, path: &StorePath, len: u64) -> Self {
        StoreObject {
            store: Arc::clone(store),
            path: path.clone(),
            len,
            blocks: Mutex::new(Vec::new()),
        }
    }

    fn fetch(&self, range: Range<u64>) -> io::Result<Bytes> {
        let (s, p) = (Arc::clone(&self.store), self.path.clone());
        let bytes = block(async move { s.get_range(&p, range).await }).map_err(io::Error::other)?;
        count(bytes.len() as u64);
        Ok(bytes)
    }

    fn block_at(&self, index: u64) -> io::Result<Bytes> {
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = blocks.iter().position(|b| b.0 == index) {
            let b = blocks.remove(i);
            let bytes = b.1.clone();
            blocks.push(b);
            return Ok(bytes);
        }
        drop(blocks);
        let start = index * BLOCK;
        let bytes = self.fetch(start..(start + BLOCK).min(self.len))?;
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        if blocks.len() >= BLOCKS_KEPT {
            blocks.remove(0);
        }
        blocks.push((index, bytes.clone()));
        Ok(bytes)
    }
}

impl RandomAccess for StoreObject {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("read past the end of {}", self.path),
                )
            })?;
        if buf.is_empty() {
            return Ok(());
        }
        if buf.len() as u64 >= BLOCK {
            let bytes = self.fetch(offset..end)?;
            if bytes.len() != buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{}: short read", self.path),
                ));
            }
            buf.copy_from_slice(&bytes);
            return Ok(());
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let block = self.block_at(at / BLOCK)?;
            let from = (at % BLOCK) as usize;
            let n = (buf.len() - done).min(block.len().saturating_sub(from));
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{}: short read", self.path),
                ));
            }
            buf[done..done + n].copy_from_slice(&block[from..from + n]);
            done += n;
        }
        Ok(())
    }
}

/// A bundle below a store prefix: a directory-like bundle (`PREFIX/manifest.json`, ...) or one
/// packed object (`PREFIX` itself).
#[derive(Debug)]
pub struct StoreBundle {
    at: StoreUrl,
}

impl StoreBundle {
    pub fn new(at: StoreUrl) -> Self {
        StoreBundle { at }
    }

    fn child(&self, name: &str) -> StorePath {
        if name.is_empty() {
            return self.at.prefix.clone();
        }
        name.split('/')
            .fold(self.at.prefix.clone(), |p, part| p.join(part))
    }
}

impl RemoteBundle for StoreBundle {
    fn open(&self, name: &str) -> io::Result<Option<Arc<dyn RandomAccess>>> {
        Ok(StoreObject::open(&self.at.store, &self.child(name))?
            .map(|o| Arc::new(o) as Arc<dyn RandomAccess>))
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        let (store, under) = (Arc::clone(&self.at.store), self.child(prefix));
        let metas: Vec<_> = block(async move { store.list(Some(&under)).try_collect().await })
            .map_err(io::Error::other)?;
        count(0);
        let base = self.at.prefix.parts().count();
        let mut names: Vec<String> = metas
            .iter()
            .map(|m| {
                m.location
                    .parts()
                    .skip(base)
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect();
        names.sort();
        Ok(names)
    }
}

/// Expands a URL whose last part is a glob pattern (`s3://b/fleet/*.ppk`) into the objects and
/// prefixes it matches, sorted; a URL without one is taken as it is.
pub fn expand(arg: &str) -> anyhow::Result<Vec<String>> {
    let Some((parent, last)) = arg.trim_end_matches('/').rsplit_once('/') else {
        return Ok(vec![arg.to_string()]);
    };
    if !last.contains(['*', '?', '[']) {
        return Ok(vec![arg.to_string()]);
    }
    if parent.contains(['*', '?', '[']) {
        bail!("{arg}: only the last part of a URL may be a pattern");
    }
    let pattern = glob::Pattern::new(last).with_context(|| format!("{arg}: bad glob pattern"))?;
    let at = parse(parent)?;
    let (store, prefix) = (Arc::clone(&at.store), at.prefix.clone());
    let listing = block(async move { store.list_with_delimiter(Some(&prefix)).await })
        .with_context(|| format!("{parent}: listing"))?;
    count(0);
    let mut out: Vec<String> = listing
        .common_prefixes
        .iter()
        .chain(listing.objects.iter().map(|o| &o.location))
        .filter(|p| p.filename().is_some_and(|f| pattern.matches(f)))
        .map(|p| at.url_of(p))
        .collect();
    if out.is_empty() {
        bail!("{arg}: no bundle matches this pattern");
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// A store that counts what DataFusion fetches from the store it wraps (requests and bytes,
/// into [`stats`]), so that partition pruning shows in the request count.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        CountingStore { inner }
    }
}

impl std::fmt::Display for CountingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "counting {}", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &StorePath,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &StorePath,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &StorePath,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        let r = self.inner.get_opts(location, options).await?;
        count(r.range.end - r.range.start);
        Ok(r)
    }

    async fn get_ranges(
        &self,
        location: &StorePath,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let r = self.inner.get_ranges(location, ranges).await?;
        for b in &r {
            count(b.len() as u64);
        }
        Ok(r)
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<StorePath>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<StorePath>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&StorePath>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        count(0);
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&StorePath>,
    ) -> object_store::Result<object_store::ListResult> {
        count(0);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &StorePath,
        to: &StorePath,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
