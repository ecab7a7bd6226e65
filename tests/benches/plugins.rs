//! Plugins that run, measured (issue 14): install time, the gateway's overhead against calling
//! the plugin directly in the same run, the health probe's latency, and 20 plugins running at
//! once with the platform's and each plugin's memory. The Python plugin of
//! `tests/plugins/notes-py` on the process driver, the platform in this process.
//!
//! `PLEXICA_TEST_KAFKA_BROKERS=… PLEXICA_TEST_DATABASE_URL=… PLEXICA_TEST_REDIS_URL=…
//!  cargo bench -p end-to-end --bench plugins` (`BENCH_PLUGINS`, default 20;
//! `BENCH_REQUESTS`, default 1000).

mod common;

use common::{ms, setting};

use std::time::{Duration, Instant};

use end_to_end::plugins::{install, wait_for_status};
use end_to_end::running::{
    enable_for_tenant, healthy_endpoint, notes_manifest, plugin_pids, spawn_running_plugins,
    tenant_with_schema, unique_id,
};
use hdrhistogram::Histogram;

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn timed_gets(client: &reqwest::Client, url: &str, token: &str, n: usize) -> Histogram<u64> {
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..n {
        let started = Instant::now();
        let response = client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("answers");
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        let _ = response.bytes().await;
        histogram
            .record(started.elapsed().as_micros() as u64)
            .expect("recorded");
    }
    histogram
}

#[tokio::main]
async fn main() {
    let plugins = setting("BENCH_PLUGINS", 20);
    let requests = setting("BENCH_REQUESTS", 1000);
    let app = spawn_running_plugins().await;
    let acme = tenant_with_schema(&app, "acme").await;
    let mut rows: Vec<(String, String)> = Vec::new();

    // Install time: from the install request to INSTALLED (migrations, start, four checks).
    let mut ids = Vec::new();
    let mut installs = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..plugins {
        let id = unique_id("bench");
        let mut manifest = notes_manifest(&id, "1.0.0", &[]);
        if !ids.is_empty() {
            // Plugins share a tenant's schema: one table `notes` per tenant.
            manifest
                .as_object_mut()
                .expect("object")
                .remove("migrations");
        }
        app.register(&manifest).await;
        let started = Instant::now();
        install(&app, &id).await;
        wait_for_status(&app, &id, "INSTALLED").await;
        installs
            .record(started.elapsed().as_millis() as u64)
            .expect("recorded");
        let path = format!("/api/v1/plugins/{id}/enable");
        end_to_end::plugins::request(&app, reqwest::Method::POST, &path, None).await;
        ids.push(id);
    }
    for id in &ids {
        wait_for_status(&app, id, "ACTIVE").await;
        healthy_endpoint(&app, id).await;
    }
    rows.push((
        "install time p50 / max (seed: < 60 s)".into(),
        format!(
            "{} ms / {} ms",
            installs.value_at_quantile(0.5),
            installs.max()
        ),
    ));

    // Gateway overhead, same run: direct to the plugin, then through the gateway.
    let id = &ids[0];
    let token = enable_for_tenant(&app, acme, id).await;
    let endpoint = healthy_endpoint(&app, id).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let direct_url = format!("{}/whoami", endpoint.url());
    let gateway_url = format!("{}/api/plugins/{id}/whoami", app.address);
    timed_gets(&client, &gateway_url, &token, 50).await;
    let direct = timed_gets(&client, &direct_url, &token, requests).await;
    let gateway = timed_gets(&client, &gateway_url, &token, requests).await;
    rows.push((
        format!("direct to the plugin p50 / p99 ({requests} GETs)"),
        format!("{:.2} ms / {:.2} ms", ms(&direct, 0.5), ms(&direct, 0.99)),
    ));
    rows.push((
        format!("through the gateway p50 / p99 ({requests} GETs)"),
        format!("{:.2} ms / {:.2} ms", ms(&gateway, 0.5), ms(&gateway, 0.99)),
    ));

    // Health probe latency (NFR-001: < 100 ms).
    let mut probes = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..requests.min(500) {
        let started = Instant::now();
        plugin_runtime::health::probe(&client, endpoint.port, "/health")
            .await
            .expect("healthy");
        probes
            .record(started.elapsed().as_micros() as u64)
            .expect("recorded");
    }
    rows.push((
        "health probe p50 / p95 (NFR-001: < 100 ms)".into(),
        format!("{:.2} ms / {:.2} ms", ms(&probes, 0.5), ms(&probes, 0.95)),
    ));

    // 20 plugins at once (NFR-007): the platform's memory and each plugin's.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let runtime = app.plugins.as_ref().expect("driver");
    let mut per_plugin: Vec<u64> = ids
        .iter()
        .map(|id| plugin_pids(id).iter().map(|pid| rss_kib(*pid)).sum())
        .collect();
    per_plugin.sort();
    let running = runtime
        .endpoints()
        .iter()
        .filter(|e| e.health.status == plugin_runtime::health::HealthStatus::Healthy)
        .count();
    rows.push((
        format!("{plugins} plugins: healthy at once"),
        running.to_string(),
    ));
    rows.push((
        "platform RSS (this process, harness included)".into(),
        format!("{} MiB", rss_kib(std::process::id() as i32) / 1024),
    ));
    rows.push((
        "each plugin's RSS min / median / max".into(),
        format!(
            "{} / {} / {} MiB",
            per_plugin.first().copied().unwrap_or(0) / 1024,
            per_plugin.get(per_plugin.len() / 2).copied().unwrap_or(0) / 1024,
            per_plugin.last().copied().unwrap_or(0) / 1024
        ),
    ));
    println!("\n| plugins (issue 14) | figure |\n|---|---|");
    for (what, figure) in rows {
        println!("| {what} | {figure} |");
    }
    app.stop().await;
}
