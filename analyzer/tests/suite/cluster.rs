//! `perfpack sql --cluster` on a real Apache DataFusion Ballista cluster: one scheduler and two
//! executors, each a separate `perfpack cluster` process on loopback, over a dataset of 50
//! generated bundles. The rows equal the local run's, and both executors did work (each wrote
//! shuffle output into its own work directory).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{fails, ok, perfpack};

/// A cluster process, killed when the test ends however it ends.
struct Node {
    child: Child,
    log: PathBuf,
}

impl Node {
    fn start(args: &[String], log: PathBuf) -> Node {
        let err = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_perfpack"))
            .args(args)
            // The scheduler logs each executor it registers (info); the test waits for both.
            .env(
                "RUST_LOG",
                "ballista_scheduler::scheduler_server::grpc=info,warn",
            )
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("perfpack cluster starts");
        Node { child, log }
    }

    /// Waits until `port` accepts connections, failing with the node's log if it exits.
    fn wait_listening(&mut self, port: u16) {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "cluster node exited ({status}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "port {port} not listening after 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Arrow IPC files (Ballista's shuffle output: `data-N.arrow`, or `data.arrow` from its sort
/// shuffle) anywhere below `dir`.
fn shuffle_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.path().extension().is_some_and(|x| x == "arrow") {
                n += 1;
            }
        }
    }
    n
}

fn sql(dataset: &Path, cluster: Option<&str>, q: &str) -> std::process::Output {
    let mut args: Vec<String> = vec!["sql".into(), "--dataset".into()];
    args.push(dataset.to_string_lossy().into_owned());
    if let Some(c) = cluster {
        args.extend(["--cluster".into(), c.into()]);
    }
    args.extend(["-q".into(), q.into(), "--format".into(), "csv".into()]);
    perfpack(args)
}

#[test]
fn a_ballista_cluster_returns_the_local_rows_and_both_executors_work() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bundles = Vec::new();
    for sc in perfpack_testgen::fleet(50) {
        let out = tmp.path().join(format!("{}.ppk", sc.name));
        perfpack_testgen::generate(&sc, &out).unwrap();
        bundles.push(out.to_string_lossy().into_owned());
    }
    let ds = tmp.path().join("fleet");
    let mut export = vec!["export".to_string(), "--dataset".into()];
    export.push(ds.to_string_lossy().into_owned());
    export.extend(bundles);
    ok(&perfpack(export));

    let scheduler_port = free_port();
    let mut scheduler = Node::start(
        &[
            "cluster".into(),
            "scheduler".into(),
            "--port".into(),
            scheduler_port.to_string(),
        ],
        tmp.path().join("scheduler.log"),
    );
    scheduler.wait_listening(scheduler_port);
    let mut executors = Vec::new();
    let mut work_dirs = Vec::new();
    for i in 0..2 {
        let (flight, grpc) = (free_port(), free_port());
        let work = tmp.path().join(format!("executor-{i}"));
        let mut node = Node::start(
            &[
                "cluster".into(),
                "executor".into(),
                "--scheduler".into(),
                format!("127.0.0.1:{scheduler_port}"),
                "--port".into(),
                flight.to_string(),
                "--grpc-port".into(),
                grpc.to_string(),
                // One task at a time each: the scheduler must use both to run the stages' tasks.
                "--slots".into(),
                "1".into(),
                "--work-dir".into(),
                work.to_string_lossy().into_owned(),
            ],
            tmp.path().join(format!("executor-{i}.log")),
        );
        node.wait_listening(flight);
        node.wait_listening(grpc);
        executors.push(node);
        work_dirs.push(work);
    }
    // Registration follows the servers' start: wait until the scheduler has both executors,
    // so that round-robin distribution must give each of them tasks.
    let start = Instant::now();
    while std::fs::read_to_string(&scheduler.log)
        .unwrap_or_default()
        .matches("register executor request")
        .count()
        < 2
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the scheduler registered fewer than 2 executors in 60 s: {}",
            std::fs::read_to_string(&scheduler.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // An executor takes tasks once its first heartbeat has reached the scheduler too.
    std::thread::sleep(Duration::from_secs(3));

    let cluster = format!("df://127.0.0.1:{scheduler_port}");
    let queries = [
        // A plain table over all 50 bundles.
        "SELECT host, count(*) AS switches, sum(CAST(prev_tid AS BIGINT)) AS tids FROM sched_switch GROUP BY host ORDER BY host",
        // A library view on block_rq_pairs, the native operator the codecs ship.
        "SELECT host, count(*) AS requests, sum(latency_ns) AS total_ns, max(latency_ns) AS max_ns FROM block_io GROUP BY host ORDER BY host",
        // Pruned to one host, on both kinds of table.
        "SELECT count(*) AS n, min(ts_ns) AS first FROM block_io WHERE host = 'fixture-i-007'",
        "SELECT * FROM cpu_frequency WHERE host IN ('fixture-i-016', 'fixture-i-033') ORDER BY 1, 2, 3, 5 LIMIT 20",
        // A library view over a UNION of block_io and two window-function views: tasks that
        // run one branch hold the others restricted to no partitions.
        "SELECT * FROM latency_histogram WHERE host IN ('fixture-i-003', 'fixture-i-041') ORDER BY bundle, source, bucket",
        // The `stack` view, a recursive CTE: the recursion runs in one task, the join and
        // aggregate over its rows on the cluster.
        "SELECT s.host, count(*) AS samples, count(DISTINCT st.folded) AS stacks, max(st.depth) AS depth FROM stack_sample s JOIN stack st ON st.bundle = s.bundle AND st.callsite_id = s.callsite_id WHERE s.host IN ('fixture-i-005', 'fixture-i-022') GROUP BY s.host ORDER BY s.host",
    ];
    // Rows each query must give, known from the fleet: one per host of the 50, one, the
    // LIMIT, and one per host of the two named (the histogram's rows depend on the data).
    let rows: [Option<usize>; 6] = [Some(50), Some(50), Some(1), Some(20), None, Some(2)];
    for (q, want) in queries.into_iter().zip(rows) {
        let local = ok(&sql(&ds, None, q));
        let remote = ok(&sql(&ds, Some(&cluster), q));
        let got = local.lines().count() - 1;
        match want {
            Some(n) => assert_eq!(got, n, "{q}: {local}"),
            None => assert!(got > 1, "{q}: no rows: {local}"),
        }
        assert_eq!(remote, local, "{q}");
    }
    // Ballista binds a stage's tasks to the executors whose slots it sees free first, and on
    // this machine one executor sometimes gets every task. Then the busy one is stopped and
    // the query runs again on the other, which must give the same rows.
    let idle: Vec<usize> = (0..work_dirs.len())
        .filter(|&i| shuffle_files(&work_dirs[i]) == 0)
        .collect();
    if idle.len() == 1 {
        for (i, node) in executors.iter_mut().enumerate() {
            if i != idle[0] {
                let _ = node.child.kill();
                let _ = node.child.wait();
            }
        }
        let local = ok(&sql(&ds, None, queries[1]));
        assert_eq!(
            ok(&sql(&ds, Some(&cluster), queries[1])),
            local,
            "{}",
            queries[1]
        );
    }
    for (i, work) in work_dirs.iter().enumerate() {
        let n = shuffle_files(work);
        assert!(
            n > 0,
            "executor {i} wrote no shuffle output in {}: {}\nscheduler: {}",
            work.display(),
            std::fs::read_to_string(&executors[i].log).unwrap_or_default(),
            std::fs::read_to_string(&scheduler.log).unwrap_or_default()
        );
    }
    drop(scheduler);
}

#[test]
fn cluster_refusals_are_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    let mut export = vec!["export".to_string(), "--dataset".into()];
    export.push(ds.to_string_lossy().into_owned());
    export.push(super::fixture("basic").to_string_lossy().into_owned());
    ok(&perfpack(export));

    // Nothing listens there.
    let port = free_port();
    let err = fails(&sql(
        &ds,
        Some(&format!("df://127.0.0.1:{port}")),
        "SELECT 1",
    ));
    assert!(err.contains(&port.to_string()), "{err}");
    // Not a scheduler URL.
    let err = fails(&sql(&ds, Some("http://127.0.0.1:50050"), "SELECT 1"));
    assert!(err.contains("df://HOST:PORT"), "{err}");
    // Bundles, not a dataset.
    let basic = super::fixture("basic").to_string_lossy().into_owned();
    let out = perfpack([
        "sql",
        &basic,
        "--cluster",
        "df://127.0.0.1:1",
        "-q",
        "SELECT 1",
    ]);
    assert!(!out.status.success());
}
