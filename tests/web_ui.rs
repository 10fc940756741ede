//! The master's page in headless Chromium (Debian's `chromium` over WebDriver) against a real
//! `cistern up` with two workers: the overview says what `cistern get dataset -o json` says,
//! the workers table lists every worker, the file browser's cached % of a directory changes
//! after a DataLoad (which the DataLoads table shows complete), the throughput plot has points
//! after reads, and a log level set on the page reaches the workers (their logs show debug
//! lines). Allowance: 60 s (about 15 s here). A screenshot is written to
//! `$CISTERN_SCREENSHOTS` when it is set.

mod support;

use support::browser::Browser;
use support::*;

const MIB: usize = 1 << 20;

#[test]
fn the_page_shows_the_dataset_every_worker_plots_reads_and_sets_log_levels() {
    let s = Scratch::new();
    let ufs = s.path("ufs");
    std::fs::create_dir_all(&ufs).unwrap();
    let mut files = std::collections::BTreeMap::new();
    for i in 0..6u64 {
        files.insert(format!("train/part-{i}.bin"), tree::bytes(40 + i, 3 * MIB + 4099 * i as usize));
    }
    files.insert("notes/readme.txt".into(), tree::bytes(7, 100_000));
    tree::write_local(&ufs, &files);
    let spec = format!(
        "  replicas: 2\n  tieredstore:\n    levels:\n      - mediumtype: MEM\n        path: {}\n        quota: 64Mi\n",
        s.path("mem").display()
    );
    let file = s.write("webui.yaml", &dataset_with_runtime("webui", &format!("local://{}", ufs.display()), "", "AlluxioRuntime", &spec));
    let mut up = Up::start(&s, &file, &[], "default", "webui");
    let base = Up::web_url(&s, "default", "webui");

    let browser = Browser::start();
    browser.go(&base);
    eventually(20, "the page's first refresh", || browser.eval("return document.body.dataset.loaded || ''").as_str().filter(|v| !v.is_empty()).map(str::to_string));

    // Every worker, with the address the master knows it by.
    let workers: serde_json::Value = serde_json::from_str(&http("GET", &format!("{base}/api/v1/workers")).1).unwrap();
    let addresses: Vec<String> = eventually(20, "two workers on the page", || {
        let rows = browser.eval("return [...document.querySelectorAll('#workers tbody tr')].map(r => r.cells[1].textContent)");
        let rows: Vec<String> = serde_json::from_value(rows).ok()?;
        (rows.len() == 2).then_some(rows)
    });
    for w in workers.as_array().unwrap() {
        assert!(addresses.contains(&w["address"].as_str().unwrap().to_string()), "{w} not on the page: {addresses:?}");
    }

    // The browser: nothing cached yet; a DataLoad of /train, then /train is all cached and
    // /notes not, and the DataLoad shows complete at 100 %.
    let row_pct = |name: &str| browser.text(&format!("#browse tr[data-name='{name}'] td.pct"));
    eventually(20, "the root listed at 0 %", || (row_pct("train") == "0.0%" && row_pct("notes") == "0.0%").then_some(()));
    let load = s.write(
        "load.yaml",
        "apiVersion: data.fluid.io/v1alpha1\nkind: DataLoad\nmetadata:\n  name: warm-train\nspec:\n  dataset:\n    name: webui\n    namespace: default\n  target:\n    - path: /train\n",
    );
    let o = s.cistern(&["load", "-f", load.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    eventually(20, "/train at 100 % in the browser", || (row_pct("train") == "100.0%" && row_pct("notes") == "0.0%").then_some(()));
    eventually(20, "the DataLoad complete", || {
        let row = "#dataloads tr[data-name='warm-train']";
        (browser.text(&format!("{row} td:nth-child(2)")) == "Complete" && browser.text(&format!("{row} td.pct")).starts_with("100.0%")).then_some(())
    });
    browser.click("#browse a[href='#/train']");
    eventually(20, "the files of /train, each cached", || {
        let pcts = browser.eval("return [...document.querySelectorAll('#browse tbody td.pct')].map(td => td.textContent)");
        let pcts: Vec<String> = serde_json::from_value(pcts).ok()?;
        (pcts.len() == 6 && pcts.iter().all(|p| p == "100.0%")).then_some(())
    });
    let (code, body) = http("GET", &format!("{base}/api/v1/browse?path=/train/../.."));
    assert_eq!(code, 400, "{body}");
    assert_eq!(http("GET", &format!("{base}/api/v1/browse?path=/absent")).0, 404);

    // Then the overview equals `cistern get dataset -o json` (both refresh every second or
    // two: wait for them to agree).
    let ids = ["#phase", "#ufs-total", "#file-num", "#cached", "#cached-pct", "#hit-ratio"];
    let (page, want) = eventually(30, "the overview agreeing with get dataset", || {
        let v: serde_json::Value = serde_json::from_slice(&s.cistern(&["get", "dataset", "-o", "json"]).stdout).ok()?;
        let st = &v["status"];
        let cs = &st["cacheStates"];
        let want: Vec<String> = [&st["phase"], &st["ufsTotal"], &st["fileNum"], &cs["cached"], &cs["cachedPercentage"], &cs["cacheHitRatio"]]
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect();
        let page: Vec<String> = ids.iter().map(|id| browser.text(id)).collect();
        (page == want && want[4] != "0.0%").then_some((page, want))
    });
    assert_eq!(page, want);

    // The throughput plot has points: what came from the UFS. (Hits of a second pass are
    // not in it: the kernel reads complete cache files itself, through FUSE passthrough.)
    let peak = |series: &str| {
        let script = format!("const p = document.querySelector('#plot-throughput polyline[data-series=\"{series}\"]'); return p ? Number(p.dataset.max) : 0;");
        browser.eval(&script).as_f64().unwrap_or(0.0)
    };
    eventually(20, "UFS throughput plotted", || (peak("UFS") > 0.0).then_some(()));
    let points: u64 = browser.eval("return Number(document.querySelector('#plot-throughput polyline').dataset.points)").as_u64().unwrap();
    assert!(points >= 1, "{points} points");

    // The log level, set on the page for the workers, reaches them.
    let worker_debug = |up: &Up| up.stderr().lines().filter(|l| l.contains("DEBUG") && l.contains("cistern_worker")).count();
    assert_eq!(worker_debug(&up), 0, "the workers logged at debug before they were asked to");
    browser.choose("#loglevel-target", "workers");
    browser.type_into("#loglevel-level", "debug");
    browser.click("#loglevel-apply");
    eventually(10, "the page confirming the level", || browser.text("#loglevel-result").contains("set to debug").then_some(()));
    let shown = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| eventually(20, "both workers showing debug on the page", || {
        let levels = browser.eval("return [...document.querySelectorAll('#workers tbody tr')].map(r => r.cells[9].textContent)");
        let levels: Vec<String> = serde_json::from_value(levels).ok()?;
        (levels.len() == 2 && levels.iter().all(|l| l.split(',').next() == Some("debug"))).then_some(())
    })));
    if shown.is_err() {
        panic!("levels: {}\nworkers: {}\nresult: {}", browser.text("#loglevels"), http("GET", &format!("{base}/api/v1/workers")).1, browser.text("#loglevel-result"));
    }
    assert!(browser.text("#loglevels").contains("workers: debug"), "{}", browser.text("#loglevels"));
    assert!(browser.text("#loglevels").starts_with("master: info"), "the master's level changed too: {}", browser.text("#loglevels"));
    tree::drop_page_cache(&up.mountpoint);
    tree::assert_mount_matches(&up.mountpoint, &files);
    eventually(10, "a debug line of a worker", || (worker_debug(&up) > 0).then_some(()));

    browser.eval("window.scrollTo(0, 0); return 0;");
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    if let Some(dir) = std::env::var_os("CISTERN_SCREENSHOTS") {
        std::fs::write(std::path::Path::new(&dir).join("web-ui.png"), &png).unwrap();
    }
    drop(browser);
    assert!(up.terminate().success(), "{}", up.stderr());
}
