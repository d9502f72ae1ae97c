//! `perfpack report`: the page of each fixture works in headless Chromium (no console errors,
//! the flame graph search finds a known function and covers what the folded stacks say, a
//! heat-map range selection redraws the flame graph with exactly the samples of that range),
//! hostile names stay text, the output is deterministic, and bad requests fail in one line.

use std::path::Path;

use serde_json::{Value, json};

use super::browser::Browser;
use super::{fails, fixture, ok, perfpack};

fn report(bundles: &[&str], out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["report".to_string()];
    args.extend(bundles.iter().map(|s| s.to_string()));
    args.extend(["-o".into(), out.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    ok(&perfpack(&args));
    std::fs::read_to_string(out).unwrap()
}

/// The browser, or None (with the reason printed) where it may be skipped.
fn browser() -> Option<Browser> {
    match Browser::start() {
        Ok(b) => Some(b),
        Err(why) => {
            perfpack_schema::skip::skip(
                "PERFPACK_REQUIRE_BROWSER",
                &format!("the browser checks: {why}"),
            );
            None
        }
    }
}

/// Console messages at error level (SEVERE) — a failing script, a blocked fetch.
fn console_errors(b: &Browser) -> Vec<String> {
    b.console()
        .unwrap()
        .into_iter()
        .filter(|(level, _)| level == "SEVERE")
        .map(|(_, m)| m)
        .collect()
}

/// Share (%) of the folded weight under stacks with a frame containing `name` (of the busy
/// samples alone with `no_idle`).
fn folded_share(bundle: &str, name: &str, no_idle: bool) -> f64 {
    let mut args = vec!["flamegraph", bundle, "--folded", "-o", "-"];
    if no_idle {
        args.push("--no-idle");
    }
    let folded = ok(&perfpack(args));
    let (mut hit, mut all) = (0u64, 0u64);
    for line in folded.lines() {
        let (stack, w) = line.rsplit_once(' ').unwrap();
        let w: u64 = w.parse().unwrap();
        all += w;
        if stack.split(';').skip(1).any(|f| f.contains(name)) {
            hit += w;
        }
    }
    100.0 * hit as f64 / all as f64
}

/// cpu-clock samples of pid 0 (the idle task) and of all, read with SQL.
fn idle_and_all(bundle: &str) -> (u64, u64) {
    let out = super::import::sql(
        Path::new(bundle),
        "SELECT SUM(CASE WHEN pid = 0 THEN 1 ELSE 0 END) AS idle, COUNT(*) AS n \
         FROM stack_sample WHERE event = 'cpu-clock'",
    );
    let row = out.lines().nth(1).unwrap();
    let (idle, all) = row.split_once(',').unwrap();
    (idle.parse().unwrap(), all.parse().unwrap())
}

/// Samples of the most sampled event with ts_ns in [start + lo, start + hi) (not of pid 0
/// with `no_idle`).
fn samples_between(bundle: &str, lo: i64, hi: i64, no_idle: bool) -> u64 {
    let info: Value =
        serde_json::from_str(&ok(&perfpack(["info", bundle, "--format", "json"]))).unwrap();
    let start = info[0]["manifest"]["clocks"]["start"]["monotonic_ns"]
        .as_i64()
        .unwrap();
    let out = super::import::sql(
        Path::new(bundle),
        &format!(
            "SELECT COUNT(*) AS n FROM stack_sample WHERE event = 'cpu-clock' \
             AND ts_ns >= {} AND ts_ns < {}{}",
            start + lo,
            start + hi,
            if no_idle { " AND pid <> 0" } else { "" }
        ),
    );
    out.lines().nth(1).unwrap().trim().parse().unwrap()
}

/// Presses the mouse at plot point (x0, y0) of heat map `index` and releases it at (x1, y1),
/// in the SVG's own coordinates.
const DRAG: &str = r#"
const heat = window.perfpack.heats[arguments[0]];
const svg = heat.svg;
const m = svg.getScreenCTM();
function at(x, y) { const p = svg.createSVGPoint(); p.x = x; p.y = y; return p.matrixTransform(m); }
const a = at(arguments[1], arguments[2]), b = at(arguments[3], arguments[4]);
svg.dispatchEvent(new MouseEvent('mousedown', {clientX: a.x, clientY: a.y, bubbles: true}));
svg.dispatchEvent(new MouseEvent('mousemove', {clientX: b.x, clientY: b.y, bubbles: true}));
svg.dispatchEvent(new MouseEvent('mouseup', {clientX: b.x, clientY: b.y, bubbles: true}));
const fg = document.getElementById('fg-cpu');
return {range: fg.getAttribute('data-range'), samples: fg.getAttribute('data-samples'),
        status: heat.status.textContent, kind: heat.kind,
        plot: [heat.left, heat.top, heat.pw, heat.ph]};
"#;

#[test]
fn each_fixture_report_works_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let b = browser();
    for name in ["basic", "before", "after"] {
        let bundle = fixture(name).display().to_string();
        let out = dir.path().join(format!("{name}.html"));
        let html = report(&[&bundle], &out, &[]);
        // Deterministic: the same bundle gives the same bytes.
        let again = dir.path().join(format!("{name}-again.html"));
        assert!(
            report(&[&bundle], &again, &[]) == html,
            "{name}: report differs between runs"
        );
        // Self-contained: nothing is fetched.
        for needle in ["src=\"http", "href=\"http", "url(http", "@import", "fetch("] {
            assert!(!html.contains(needle), "{name}: {needle} in the report");
        }
        for section in [
            "id=\"host\"",
            "id=\"use\"",
            "id=\"fg-cpu\"",
            "id=\"fg-offcpu\"",
            "id=\"frequency\"",
            "data-kind=\"offset\"",
            "data-kind=\"time\"",
        ] {
            assert!(html.contains(section), "{name}: no {section}");
        }
        // Idle stated, and hidden where it is more than half the samples (basic: 2,508 of
        // 3,960; before and after under half).
        let (idle, all) = idle_and_all(&bundle);
        let hidden = 2 * idle > all;
        let share = format!(
            "idle (pid 0): {:.1}% of samples{}",
            100.0 * idle as f64 / all as f64,
            if hidden { ", hidden" } else { "" }
        );
        assert!(html.contains(&share), "{name}: no {share:?}");
        assert_eq!(hidden, name == "basic");
        let Some(b) = &b else { continue };
        b.open(&out).unwrap();
        let errors = console_errors(b);
        assert!(errors.is_empty(), "{name}: console errors {errors:?}");
        let state = b
            .run(
                "const fg = document.getElementById('fg-cpu');\
                 return [fg.querySelector('.show-idle').checked, fg.getAttribute('data-samples')];",
                json!([]),
            )
            .unwrap();
        let shown = if hidden { all - idle } else { all };
        assert_eq!(state, json!([!hidden, shown.to_string()]), "{name}");

        // Search: the share the page reports equals the folded stacks' share.
        let got = b
            .run(
                "const fg = document.getElementById('fg-cpu'); const s = fg.querySelector('.search');\
                 s.value = 'heapgettup_pagemode'; s.dispatchEvent(new Event('input'));\
                 return [fg.getAttribute('data-matched'), fg.querySelector('.matched').textContent];",
                json!([]),
            )
            .unwrap();
        let shown: f64 = got[0].as_str().unwrap().parse().unwrap();
        let want = folded_share(&bundle, "heapgettup_pagemode", hidden);
        assert!(want > 0.0, "{name}: heapgettup_pagemode not sampled");
        assert!(
            (shown - want).abs() < 0.011,
            "{name}: search shows {shown}%, folded says {want}% ({got})"
        );
        assert!(got[1].as_str().unwrap().starts_with("Matched: "), "{got}");

        // A drag across the block I/O heat map (the first time map): the flame graph shows the
        // samples of exactly the columns covered.
        let heat = b
            .run(
                "return window.perfpack.heats.findIndex(h => h.kind === 'time');",
                json!([]),
            )
            .unwrap();
        let plot = b.run(DRAG, json!([heat, 0, 0, 0, 0])).unwrap()["plot"].clone();
        let (left, top, pw, ph) = (
            plot[0].as_f64().unwrap(),
            plot[1].as_f64().unwrap(),
            plot[2].as_f64().unwrap(),
            plot[3].as_f64().unwrap(),
        );
        let sel = b
            .run(
                DRAG,
                json!([
                    heat,
                    left + pw * 0.2,
                    top + ph / 2.0,
                    left + pw * 0.45,
                    top + ph / 2.0
                ]),
            )
            .unwrap();
        let range = sel["range"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no range after a drag: {sel}"));
        let (lo, hi) = range.split_once('-').unwrap();
        let (lo, hi): (i64, i64) = (lo.parse().unwrap(), hi.parse().unwrap());
        let samples: u64 = sel["samples"].as_str().unwrap().parse().unwrap();
        assert!(hi > lo && samples > 0, "{name}: {sel}");
        assert_eq!(
            samples,
            samples_between(&bundle, lo, hi, hidden),
            "{name}: {sel}"
        );
        assert!(
            sel["status"].as_str().unwrap().starts_with("Selected "),
            "{sel}"
        );

        // Two clicks on the sub-second map: from the first cell to the second.
        let sel = b
            .run(
                &format!(
                    "const i = window.perfpack.heats.findIndex(h => h.kind === 'offset');\
                     const h = window.perfpack.heats[i];\
                     const x = h.left + h.pw * 0.35, y1 = h.top + h.ph * 0.9, y2 = h.top + h.ph * 0.1;\
                     const f = new Function({DRAG:?});\
                     f(i, x, y1, x, y1); return f(i, x, y2, x, y2);"
                ),
                json!([]),
            )
            .unwrap();
        let samples: u64 = sel["samples"].as_str().unwrap().parse().unwrap();
        let range = sel["range"].as_str().unwrap().to_string();
        let (lo, hi) = range.split_once('-').unwrap();
        let (lo, hi): (i64, i64) = (lo.parse().unwrap(), hi.parse().unwrap());
        // Rows 5 to 45 of a 1 s column of 20 ms rows: 41 rows.
        assert_eq!(hi - lo, 820_000_000, "{name}: {sel}");
        assert_eq!(
            samples,
            samples_between(&bundle, lo, hi, hidden),
            "{name}: {sel}"
        );

        // The box shows or hides idle within the same range.
        let toggled = b
            .run(
                "const fg = document.getElementById('fg-cpu'); const box = fg.querySelector('.show-idle');\
                 box.click(); return [box.checked, fg.getAttribute('data-range'), fg.getAttribute('data-samples')];",
                json!([]),
            )
            .unwrap();
        assert_eq!(
            toggled,
            json!([
                hidden,
                range,
                samples_between(&bundle, lo, hi, !hidden).to_string()
            ]),
            "{name}"
        );

        let errors = console_errors(b);
        assert!(errors.is_empty(), "{name}: console errors {errors:?}");
        let png = b.screenshot().unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 20_000,
            "{name}: screenshot"
        );
        let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("report-{name}.png"));
        std::fs::write(&shot, png).unwrap();
        eprintln!("screenshot: {}", shot.display());
    }
}

#[test]
fn hostile_names_stay_text_in_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let (cpu, io) = super::pictures::hostile_bundles(dir.path());
    let out = dir.path().join("hostile.html");
    let html = report(&[&cpu, &io], &out, &["--title", super::pictures::HOSTILE]);
    assert!(
        !html.contains(super::pictures::HOSTILE),
        "raw <script> in the report"
    );
    assert!(
        !html.contains("<script>alert"),
        "raw <script> in the report"
    );
    assert!(!html.contains("<img src=x"), "raw <img> in the report");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let Some(b) = browser() else { return };
    b.open(&out).unwrap();
    assert_eq!(b.alert(), None, "an alert opened");
    let errors = console_errors(&b);
    assert!(errors.is_empty(), "console errors {errors:?}");
    // The names are on the page as text, in the tables and in the flame graph data.
    let got = b
        .run(
            "const fg = window.perfpack.flames['fg-cpu'];\
             return [document.body.textContent.includes(arguments[0]),\
                     fg.d.names.filter(n => n.includes('<script>')).length,\
                     document.querySelectorAll('img').length];",
            json!([super::pictures::HOSTILE]),
        )
        .unwrap();
    // The comm and the module named `<script>alert(3)<\script>.so`.
    assert_eq!(got, json!([true, 2, 0]), "{got}");
}

#[test]
fn several_bundles_get_the_fleet_ranking_and_two_the_comparison() {
    let dir = tempfile::tempdir().unwrap();
    for sc in perfpack_testgen::fleet(4) {
        perfpack_testgen::generate(&sc, &dir.path().join(format!("{}.ppk", sc.name))).unwrap();
    }
    let pattern = dir.path().join("i-*.ppk").display().to_string();
    let html = report(&[&pattern], &dir.path().join("fleet.html"), &[]);
    assert!(html.contains("<h2>Fleet ranking</h2>"));
    assert!(html.contains("of 4 bundles are worse than the fleet"));

    let (before, after) = (
        fixture("before").display().to_string(),
        fixture("after").display().to_string(),
    );
    let cmp = dir.path().join("cmp.html");
    let html = report(&[&before, &after], &cmp, &["--compare"]);
    assert!(html.contains("Comparison: second vs first"));
    assert!(html.contains("explained by frequency"), "the turbo verdict");
    // The differential flame graph's own script runs inline without errors.
    let Some(b) = browser() else { return };
    b.open(&cmp).unwrap();
    let errors = console_errors(&b);
    assert!(errors.is_empty(), "console errors {errors:?}");
}

#[test]
fn bad_report_requests_fail_in_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.html");
    let basic = fixture("basic").display().to_string();
    let err = fails(&perfpack([
        "report",
        &basic,
        "--compare",
        "-o",
        &out.display().to_string(),
    ]));
    assert!(err.contains("--compare needs exactly two bundles"), "{err}");
    let missing = dir.path().join("nope.ppk").display().to_string();
    let err = fails(&perfpack([
        "report",
        &missing,
        "-o",
        &out.display().to_string(),
    ]));
    assert!(err.contains("nope.ppk"), "{err}");
    assert!(!out.exists());
}

#[test]
fn the_demo_records_its_workload_and_the_report_shows_it() {
    // `./demo.sh` on the test build: it records this machine (-a) while
    // `perfpack-test-workload demo` runs, and writes the report. Where this machine cannot
    // record, it says so and reports the fixture instead (a skip, unless recording is required).
    let bin = Path::new(env!("CARGO_BIN_EXE_perfpack")).parent().unwrap();
    for b in ["perfpack-record", "perfpack-test-workload"] {
        assert!(
            bin.join(b).exists(),
            "{}: not built (cargo test --workspace builds it)",
            bin.join(b).display()
        );
    }
    let _live = super::live();
    let dir = tempfile::tempdir().unwrap();
    let (bundle, page) = (dir.path().join("demo.ppk"), dir.path().join("demo.html"));
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo.sh");
    let out = std::process::Command::new("bash")
        .arg(&demo)
        .args([&bundle, &page])
        .env("PERFPACK_DEMO_BIN", bin)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo.sh failed: {said}");
    assert!(page.exists(), "{said}");
    if !bundle.exists() {
        perfpack_schema::skip::skip(
            "PERFPACK_REQUIRE_RECORDING",
            &format!("the demo could not record here: {said}"),
        );
        return;
    }
    // What the kernel counted for the demo's CPU thread (it prints it as it ends).
    let stdout = String::from_utf8_lossy(&out.stdout);
    let thread_s: f64 = stdout
        .split("demo: parse/checksum thread CPU ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no thread CPU in the demo's output: {stdout}"));
    // The recorded bundle in the Firefox Profiler's format holds every sample, request and
    // blocked interval of it, with the demo's functions on the stacks.
    let read = super::firefox::check_against_bundle(&bundle);
    let under = |f: &str| read.total_by_function.get(f).copied().unwrap_or(0);
    assert!(
        under("perfpack_demo_parse") > under("perfpack_demo_checksum")
            && under("perfpack_demo_checksum") > 0,
        "the profile's samples under the demo's functions: {:?}",
        ["perfpack_demo_parse", "perfpack_demo_checksum"].map(under)
    );
    let Some(b) = browser() else { return };
    b.open(&page).unwrap();
    let errors = console_errors(&b);
    assert!(errors.is_empty(), "console errors {errors:?}");
    // On the page, idle hidden: the ns under each frame name (a name counted once per stack).
    let got = b
        .run(
            "const fg = window.perfpack.flames['fg-cpu']; const d = fg.d;\
             const box = fg.root.querySelector('.show-idle'); if (box && box.checked) box.click();\
             const v = fg.value, under = {};\
             for (let i = 1; i < d.parent.length; i++) {\
               const n = d.names[d.name[i]]; let dup = false;\
               for (let a = d.parent[i]; a > 0; a = d.parent[a]) if (d.names[d.name[a]] === n) dup = true;\
               if (!dup) under[n] = (under[n] || 0) + v[i]; }\
             return [under['perfpack_demo_parse'] || 0, under['perfpack_demo_checksum'] || 0, v[0]];",
            json!([]),
        )
        .unwrap();
    let ns = |i: usize| got[i].as_f64().unwrap();
    let (parse, checksum, busy) = (ns(0), ns(1), ns(2));
    // The thread's CPU time is what its samples must add up to (at 99 Hz: a sample stands for
    // 10.1 ms, so a few samples either way; and samples lost under load count against it).
    let lost = super::lost_samples(&bundle);
    let sampled = (parse + checksum) / 1e9;
    eprintln!(
        "demo: {sampled:.3} s sampled under parse+checksum ({lost} lost), thread CPU {thread_s:.3} s, parse {:.1}% of busy",
        100.0 * parse / busy
    );
    assert!(
        sampled + lost as f64 / 99.0 > 0.6 * thread_s && sampled < 1.1 * thread_s + 0.1,
        "the page has {sampled:.3} s under the demo's functions ({lost} samples lost); its thread used {thread_s:.3} s"
    );
    // Seven parse calls for three checksum calls of the same work.
    let share = parse / (parse + checksum);
    assert!((0.55..0.85).contains(&share), "parse's share {share:.2}");
    // And the demo is no small part of the machine's busy time.
    assert!(parse / busy > 0.1, "parse {parse} of {busy} busy ns");
}
