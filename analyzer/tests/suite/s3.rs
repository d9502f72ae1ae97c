//! Bundles and datasets in a real S3-compatible store: `moto_server` (PyPI `moto[server]`)
//! started on loopback by the test. Fixture bundles are uploaded packed and as directories;
//! `info`, `sql` and `flamegraph` on `s3://` URLs must give what they give on the local files,
//! byte for byte. A machine without `moto_server` skips and says so, unless
//! `PERFPACK_REQUIRE_S3=1` (CI) makes that a failure.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{fixture, ok, perfpack};

/// A moto server on a free loopback port, stopped on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Option<Moto> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let child = match Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            perfpack_schema::skip::skip(
                "PERFPACK_REQUIRE_S3",
                &format!("no moto_server ({e}); pip install 'moto[server]' to run"),
            );
            return None;
        }
    };
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(moto)
}

/// An S3 client of the test's own (object_store, as a user's `aws s3 cp` would be).
fn client(endpoint: &str, bucket: &str) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .expect("s3 client")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn create_bucket(endpoint: &str, bucket: &str) {
    // moto creates a bucket on a plain PUT of its path (no signature checks).
    let addr = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    use std::io::{Read as _, Write as _};
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "create bucket: {reply}");
}

fn upload(store: &object_store::aws::AmazonS3, key: &str, file: &Path) {
    use object_store::ObjectStoreExt as _;
    let bytes = std::fs::read(file).unwrap();
    rt().block_on(store.put(&key.into(), bytes.into()))
        .unwrap_or_else(|e| panic!("upload {key}: {e}"));
}

fn upload_dir(store: &object_store::aws::AmazonS3, prefix: &str, dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            upload_dir(store, &format!("{prefix}/{name}"), &entry.path());
        } else {
            upload(store, &format!("{prefix}/{name}"), &entry.path());
        }
    }
}

/// `perfpack` with the store's endpoint and credentials.
fn s3_command(endpoint: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_perfpack"));
    c.arg("--endpoint")
        .arg(endpoint)
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1");
    c
}

/// A run that also prints what it fetched from the store.
fn s3_perfpack(endpoint: &str, args: &[&str]) -> std::process::Output {
    s3_command(endpoint, args)
        .env("PERFPACK_STORE_STATS", "1")
        .output()
        .expect("perfpack runs")
}

/// The `perfpack: object store: N requests, M bytes` line of a run.
fn fetched(out: &std::process::Output) -> (u64, u64) {
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find_map(|l| l.strip_prefix("perfpack: object store: "))
        .unwrap_or_else(|| panic!("no store counters in: {err}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    (nums[0], nums[1])
}

const QUERY: &str = "SELECT bundle, host, count(*) AS n, sum(latency_ns) AS total \
                     FROM block_io GROUP BY 1, 2 ORDER BY 1, 2";

#[test]
fn s3_bundles_give_the_local_results_byte_for_byte() {
    let Some(moto) = start_moto() else { return };
    let ep = moto.endpoint.as_str();
    create_bucket(ep, "fleet");
    let store = client(ep, "fleet");
    let tmp = tempfile::tempdir().unwrap();
    let basic = fixture("basic");
    upload_dir(&store, "dir/basic.ppk", &basic);
    let packed = tmp.path().join("basic.ppk");
    ok(&perfpack([
        "pack".as_ref(),
        basic.as_os_str(),
        "-o".as_ref(),
        packed.as_os_str(),
    ]));
    upload(&store, "packed/basic.ppk", &packed);

    let local_info = ok(&perfpack(["info".as_ref(), basic.as_os_str()]));
    let local_sql = ok(&perfpack([
        "sql".as_ref(),
        basic.as_os_str(),
        "-q".as_ref(),
        QUERY.as_ref(),
        "--format".as_ref(),
        "csv".as_ref(),
    ]));
    let svg = tmp.path().join("local.svg");
    ok(&perfpack([
        "flamegraph".as_ref(),
        basic.as_os_str(),
        "-o".as_ref(),
        svg.as_os_str(),
    ]));
    let local_svg = std::fs::read(&svg).unwrap();

    for url in ["s3://fleet/packed/basic.ppk", "s3://fleet/dir/basic.ppk"] {
        let info = ok(&s3_perfpack(ep, &["info", url]));
        // The first line names where the bundle is; the rest must match.
        let rest = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
        assert_eq!(rest(&info), rest(&local_info), "{url}");
        let run = s3_perfpack(ep, &["sql", url, "-q", QUERY, "--format", "csv"]);
        assert_eq!(ok(&run), local_sql, "{url}");
        let out = tmp.path().join("s3.svg");
        ok(&s3_perfpack(
            ep,
            &["flamegraph", url, "-o", out.to_str().unwrap()],
        ));
        assert_eq!(std::fs::read(&out).unwrap(), local_svg, "{url}");
    }
    // Read in place with ranged requests, not downloaded: a query of one table of a larger
    // bundle fetches a small part of it (footers, page headers, that table's pages).
    let mut big = perfpack_testgen::Scenario::basic();
    big.name = "big".into();
    big.n_block_requests = 100_000;
    big.freq_hz = 999;
    let big_dir = tmp.path().join("big.ppk");
    perfpack_testgen::generate(&big, &big_dir).unwrap();
    let big_packed = tmp.path().join("big-packed.ppk");
    ok(&perfpack([
        "pack".as_ref(),
        big_dir.as_os_str(),
        "-o".as_ref(),
        big_packed.as_os_str(),
    ]));
    upload(&store, "packed/big.ppk", &big_packed);
    let q = "SELECT count(*) AS n FROM sched_wakeup";
    let local = ok(&perfpack([
        "sql".as_ref(),
        big_dir.as_os_str(),
        "-q".as_ref(),
        q.as_ref(),
    ]));
    let run = s3_perfpack(ep, &["sql", "s3://fleet/packed/big.ppk", "-q", q]);
    assert_eq!(ok(&run), local);
    let (requests, bytes) = fetched(&run);
    let size = std::fs::metadata(&big_packed).unwrap().len();
    assert!(
        bytes * 4 < size,
        "fetched {bytes} bytes in {requests} requests of a {size}-byte bundle"
    );

    // A glob over a prefix lists the store.
    let listed = ok(&s3_perfpack(
        ep,
        &["info", "--format", "json", "s3://fleet/dir/*.ppk"],
    ));
    assert!(listed.contains("fixture-basic-1"), "{listed}");

    // Bad locations: one line naming the URL.
    let quiet = |args: &[&str]| s3_command(ep, args).output().expect("perfpack runs");
    let err = super::fails(&quiet(&["info", "s3://fleet/nothing-here.ppk"]));
    assert!(err.contains("s3://fleet/nothing-here.ppk"), "{err}");
    let err = super::fails(&quiet(&["info", "s3://fleet/dir/*.nope"]));
    assert!(err.contains("no bundle matches"), "{err}");
}

#[test]
fn datasets_in_s3_are_idempotent_and_pruned_by_host() {
    let Some(moto) = start_moto() else { return };
    let ep = moto.endpoint.as_str();
    create_bucket(ep, "dsets");
    let fixtures: Vec<String> = ["after", "basic", "before"]
        .iter()
        .map(|n| fixture(n).to_string_lossy().into_owned())
        .collect();
    let mut export = vec!["export", "--dataset", "s3://dsets/fleet"];
    export.extend(fixtures.iter().map(String::as_str));
    ok(&s3_perfpack(ep, &export));
    let local = {
        let mut a = vec!["sql"];
        a.extend(fixtures.iter().map(String::as_str));
        a.extend(["-q", QUERY, "--format", "csv"]);
        ok(&s3_perfpack(ep, &a))
    };
    let query = |q: &str| {
        s3_perfpack(
            ep,
            &[
                "sql",
                "--dataset",
                "s3://dsets/fleet",
                "-q",
                q,
                "--format",
                "csv",
            ],
        )
    };
    assert_eq!(ok(&query(QUERY)), local);

    // Exporting a bundle again replaces it: the same rows, not twice as many.
    ok(&s3_perfpack(
        ep,
        &["export", "--dataset", "s3://dsets/fleet", &fixtures[0]],
    ));
    assert_eq!(ok(&query(QUERY)), local);
    let count = "SELECT count(*) AS n FROM sched_switch";
    let all = query(count);
    let one = query("SELECT count(*) AS n FROM sched_switch WHERE host = 'fixture-before'");
    assert_eq!(ok(&one), "n\n10659\n");
    let ((_, all_bytes), (_, one_bytes)) = (fetched(&all), fetched(&one));
    // fixture-before's one sched_switch file is 51651 bytes; the other hosts' are not read.
    assert!(
        one_bytes <= 51651 && one_bytes * 2 < all_bytes,
        "one host read {one_bytes} bytes, all hosts {all_bytes}"
    );
    // The bundles table, and a command that takes bundles over the dataset.
    assert_eq!(
        ok(&query(
            "SELECT bundle, bundle_id FROM bundles ORDER BY bundle"
        )),
        "bundle,bundle_id\nafter,fixture-after-7\nbasic,fixture-basic-1\nbefore,fixture-before-7\n"
    );
    let fleet = ok(&s3_perfpack(ep, &["fleet", "s3://dsets/fleet"]));
    let mut local_fleet = vec!["fleet"];
    local_fleet.extend(fixtures.iter().map(String::as_str));
    assert_eq!(fleet, ok(&s3_perfpack(ep, &local_fleet)));
}

/// A store nobody listens at: one line naming the URL and the refused connection, said once,
/// after a few retries rather than object_store's default ten.
#[test]
fn an_unreachable_store_is_one_short_line() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let endpoint = format!("http://127.0.0.1:{port}");
    let out = s3_command(&endpoint, &["info", "s3://nobody/basic.ppk"])
        .output()
        .expect("perfpack runs");
    let err = super::fails(&out);
    assert!(
        err.starts_with("perfpack: s3://nobody/basic.ppk: "),
        "{err}"
    );
    assert!(err.contains("after 3 retries"), "{err}");
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
    assert_eq!(err.matches("retry_timeout").count(), 1, "{err}");
}

#[test]
fn pages_of_a_bundle_read_in_place_are_checked_as_they_are_fetched() {
    use parquet::file::reader::{ChunkReader as _, Length as _};
    let Some(moto) = start_moto() else { return };
    let ep = moto.endpoint.as_str();
    create_bucket(ep, "hostile");
    let store = client(ep, "hostile");
    // A segment whose footer passes and whose pages lie (one of the packed fuzz target's
    // finds), put in place of the same table's first segment of the basic fixture: the
    // bundle opens, and only a page walk of that table can say what is wrong.
    for (input, why) in [
        (
            "def-levels-past-data",
            "definition levels that run past their data",
        ),
        (
            "dictionary-index-width",
            "dictionary indices wider than 32 bits",
        ),
        (
            "delta-count-zero",
            "DELTA_BINARY_PACKED page whose header does not count",
        ),
    ] {
        let found = perfpack_schema::Bundle::open(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fuzz/regressions/packed")
                .join(input),
        )
        .unwrap();
        let table = perfpack_schema::tables::ALL
            .iter()
            .find(|t| {
                found
                    .read_table(t)
                    .err()
                    .is_some_and(|e| e.to_string().contains(why))
            })
            .unwrap_or_else(|| panic!("{input}: no table with {why:?}"));
        let seg = &found.segments(table)[0];
        let data = found.segment_data(seg).unwrap();
        let bytes = data.get_bytes(0, data.len() as usize).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let b = tmp.path().join("b.ppk");
        super::copy_dir(&fixture("basic"), &b);
        let file = b.join(format!("tables/{}/seg-000000.parquet", table.name));
        std::fs::write(&file, &bytes).unwrap();
        let mpath = b.join("manifest.json");
        let mut m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
        let t = &mut m["tables"][table.name];
        let old = t["segments"][0]["rows"].as_u64().unwrap();
        t["segments"][0]["rows"] = seg.rows.into();
        t["segments"][0]["bytes"] = (bytes.len() as u64).into();
        t["segments"][0]["min_ts_ns"] = serde_json::Value::Null;
        t["segments"][0]["max_ts_ns"] = serde_json::Value::Null;
        t["rows"] = (t["rows"].as_u64().unwrap() - old + seg.rows).into();
        std::fs::write(&mpath, serde_json::to_string_pretty(&m).unwrap()).unwrap();
        upload_dir(&store, &format!("{input}/b.ppk"), &b);
        let url = format!("s3://hostile/{input}/b.ppk");
        let q = format!("SELECT * FROM {}", table.sql_name());
        let out = s3_perfpack(ep, &["sql", &url, "-q", &q, "--format", "csv"]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{input} {q}: {err}");
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| !l.contains("warning:") && !l.contains("object store:"))
            .collect();
        assert_eq!(lines.len(), 1, "{input} {q}: {err}");
        assert!(
            lines[0].contains(why) && lines[0].contains(&format!("tables/{}/", table.name)),
            "{input} {q}: {err}"
        );
    }
}
