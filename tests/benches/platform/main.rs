//! `cargo xtask bench`: measures the platform against the limits of the machine it runs on,
//! each scenario beside its baseline in the same run, and prints one table (also written as
//! JSON). See the README's "Benchmarks" section.
//!
//! The xtask starts the broker and passes the services as for the tests
//! (`PLEXICA_TEST_KAFKA_BROKERS`, `PLEXICA_TEST_DATABASE_URL`, `PLEXICA_TEST_REDIS_URL`), and
//! `BENCH_QUICK`, `BENCH_RUNS`, `BENCH_OUTPUT`, `BENCH_REVISION`.

mod commands;
mod cpu;
mod load;
mod scaling;
mod scenarios;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Serialize;
use serde_json::{Value, json};

use crate::commands::{Api, CommandMix};
use crate::scenarios::Run;
use end_to_end::process::{Isolation, Platform};

/// The platform in a process of its own, so that its memory is apart from the generator's.
pub const PLATFORM: &str = env!("CARGO_BIN_EXE_platform-under-test");

/// Sizes and rates of one bench run.
#[derive(Debug, Clone, Serialize)]
pub struct Parameters {
    pub runs: usize,
    /// Plugins per group of the command mix.
    pub mix_group: usize,
    pub command_rate: f64,
    #[serde(with = "seconds")]
    pub warm_up: Duration,
    #[serde(with = "seconds")]
    pub measured: Duration,
    pub knee_ladder: Vec<f64>,
    pub knee_p99_ms: f64,
    #[serde(with = "seconds")]
    pub knee_warm_up: Duration,
    #[serde(with = "seconds")]
    pub knee_step: Duration,
    pub raw_produce_records: usize,
    pub freshness_samples: usize,
    pub rebuild_events: usize,
    pub rebuild_aggregates: usize,
    pub list_plugins: usize,
    pub list_tenants: usize,
    pub list_rate: f64,
    pub dlq_events: usize,
    pub dlq_keys: usize,
    /// One record in this many is poison.
    pub dlq_poison_every: usize,
    /// The sizes of the scaling table (group `scaling`): events of a projection rebuild,
    /// plugins of the GraphQL list, aggregates the command processor owns, stored dead letters.
    pub scale_rebuild_events: Vec<usize>,
    pub scale_list_plugins: Vec<usize>,
    pub scale_aggregates: Vec<usize>,
    pub scale_dead_letters: Vec<usize>,
}

mod seconds {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

impl Parameters {
    fn full(runs: usize) -> Self {
        Self {
            runs,
            // Each plugin of the mix is touched every `4 × mix_group / rate` s: 190 ms at
            // 1,000 commands/s, well above a reply, so the mix stays free of conflicts.
            mix_group: 48,
            command_rate: 20.0,
            warm_up: Duration::from_secs(3),
            measured: Duration::from_secs(20),
            knee_ladder: vec![
                10.0, 20.0, 40.0, 80.0, 160.0, 240.0, 280.0, 320.0, 400.0, 480.0, 640.0, 960.0,
                1280.0, 1920.0,
            ],
            knee_p99_ms: 50.0,
            knee_warm_up: Duration::from_secs(2),
            knee_step: Duration::from_secs(8),
            raw_produce_records: 20_000,
            freshness_samples: 200,
            rebuild_events: 100_000,
            rebuild_aggregates: 10_000,
            list_plugins: 1_000,
            list_tenants: 200,
            list_rate: 50.0,
            dlq_events: 50_000,
            dlq_keys: 5_000,
            dlq_poison_every: 100,
            scale_rebuild_events: vec![10_000, 100_000, 1_000_000],
            scale_list_plugins: vec![1_000, 10_000, 100_000],
            scale_aggregates: vec![1_000, 100_000],
            scale_dead_letters: vec![100, 100_000],
        }
    }

    /// Tiny sizes: proves the harness end to end in well under a minute of measuring.
    fn quick() -> Self {
        Self {
            runs: 1,
            mix_group: 2,
            command_rate: 10.0,
            warm_up: Duration::from_millis(300),
            measured: Duration::from_secs(1),
            knee_ladder: vec![5.0, 10.0],
            knee_warm_up: Duration::from_millis(200),
            knee_step: Duration::from_secs(1),
            raw_produce_records: 500,
            freshness_samples: 8,
            rebuild_events: 1_000,
            rebuild_aggregates: 100,
            list_plugins: 60,
            list_tenants: 12,
            list_rate: 20.0,
            dlq_events: 1_000,
            dlq_keys: 100,
            scale_rebuild_events: vec![2_000, 5_000],
            scale_list_plugins: vec![50, 500],
            scale_aggregates: vec![50, 500],
            scale_dead_letters: vec![10, 1_000],
            ..Self::full(1)
        }
    }
}

#[derive(Debug, Parser)]
struct Cli {
    /// Tiny sizes, one run: checks the harness, the figures mean little.
    #[arg(long, env = "BENCH_QUICK")]
    quick: bool,
    /// Runs of each scenario; the table shows their median, min and max.
    #[arg(long, env = "BENCH_RUNS", default_value_t = 3)]
    runs: usize,
    /// Where the results go as JSON.
    #[arg(
        long,
        env = "BENCH_OUTPUT",
        default_value = "target/bench/results.json"
    )]
    output: PathBuf,
    /// The revision measured, for the JSON.
    #[arg(long, env = "BENCH_REVISION", default_value = "unknown")]
    revision: String,
    /// Only these groups of scenarios (commands, rebuild, list, dlq, scaling), e.g. to
    /// profile one.
    #[arg(long, env = "BENCH_ONLY", value_delimiter = ',')]
    only: Vec<String>,
    /// `cargo bench` passes `--bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> std::process::ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let cli = Cli::parse();
    let parameters = if cli.quick {
        Parameters::quick()
    } else {
        Parameters::full(cli.runs.max(1))
    };
    runtime.block_on(measure(cli, parameters));
    std::process::ExitCode::SUCCESS
}

/// One scenario's runs.
struct Scenario {
    name: &'static str,
    runs: Vec<Run>,
}

async fn measure(cli: Cli, p: Parameters) {
    let logs = cli
        .output
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
        .join("logs");
    std::fs::create_dir_all(&logs).expect("the bench's log folder can be made");
    println!(
        "Benchmarks{} on {}: {} run(s) per scenario; platform logs in {}",
        if cli.quick { " (quick)" } else { "" },
        infra::testing::kafka_brokers(),
        p.runs,
        logs.display()
    );
    let mut scenarios = Vec::new();
    let mut add = |name: &'static str, run: Run| {
        print_run(name, &run);
        match scenarios
            .iter_mut()
            .find(|s: &&mut Scenario| s.name == name)
        {
            Some(scenario) => scenario.runs.push(run),
            None => scenarios.push(Scenario {
                name,
                runs: vec![run],
            }),
        }
    };

    let isolation = Isolation::fresh().await;
    let platform = Platform::start(
        PLATFORM,
        "all",
        &isolation,
        None,
        &logs.join("platform.log"),
    )
    .await;
    let selected = |group: &str| cli.only.is_empty() || cli.only.iter().any(|g| g == group);
    let api = Api::new(&platform);
    if selected("commands") {
        step("preparing the command mix (plugins installed and enabled, a tenant)");
        let mix = CommandMix::prepare(&platform, &api, p.mix_group).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let at_rest = platform.memory();
        // What an idle platform costs the broker: its consumers rest once they have gone
        // `KAFKA_REST_AFTER_MS` (2 s) without a record.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = cpu::CpuSpan::start(platform.pid());
        tokio::time::sleep(Duration::from_secs(5)).await;
        add(
            "idle platform",
            Run {
                platform: BTreeMap::from(idle.end().figures()),
                baseline: BTreeMap::new(),
            },
        );

        for run in 0..p.runs {
            step(&format!(
                "run {}/{}: command reply latency at {}/s",
                run + 1,
                p.runs,
                p.command_rate
            ));
            add(
                "command reply latency",
                scenarios::command_latency(&p, &mix, &isolation).await,
            );
            step(&format!(
                "run {}/{}: knee (p99 < {} ms)",
                run + 1,
                p.runs,
                p.knee_p99_ms
            ));
            add(
                "commands/s at the knee",
                scenarios::knee(&p, &mix, &isolation, &api).await,
            );
            step(&format!("run {}/{}: freshness", run + 1, p.runs));
            add(
                "freshness",
                scenarios::freshness(&p, &mix, &isolation).await,
            );
        }
        let loaded = platform.memory();
        add(
            "resident memory",
            Run {
                platform: BTreeMap::from([
                    ("at_rest_mib", at_rest.resident_mib),
                    ("peak_under_load_mib", loaded.peak_mib),
                ]),
                baseline: BTreeMap::new(),
            },
        );
    }
    let registry = platform.registry_url.clone();

    if selected("rebuild") {
        step(&format!(
            "writing {} events over {} plugins",
            p.rebuild_events, p.rebuild_aggregates
        ));
        let log =
            scenarios::prepare_plugin_log(&registry, p.rebuild_aggregates, p.rebuild_events, None)
                .await;
        for run in 0..p.runs {
            step(&format!(
                "run {}/{}: projection rebuild from offset 0",
                run + 1,
                p.runs
            ));
            add("projection rebuild", scenarios::rebuild(&log, &logs).await);
        }
    }

    if selected("list") {
        step(&format!(
            "preparing {} plugins and {} tenants",
            p.list_plugins, p.list_tenants
        ));
        let read_side = scenarios::prepare_plugin_list(&p, &registry, &logs).await;
        for run in 0..p.runs {
            step(&format!(
                "run {}/{}: GraphQL plugin list at {}/s",
                run + 1,
                p.runs,
                p.list_rate
            ));
            add(
                "GraphQL plugin list",
                scenarios::plugin_list(&p, &read_side).await,
            );
        }
        read_side.stop().await;
    }

    if selected("dlq") {
        step(&format!(
            "writing {} events over {} keys, with and without poison",
            p.dlq_events, p.dlq_keys
        ));
        let poisoned = scenarios::prepare_plugin_log(
            &registry,
            p.dlq_keys,
            p.dlq_events,
            Some(p.dlq_poison_every),
        )
        .await;
        let clean = scenarios::prepare_plugin_log(&registry, p.dlq_keys, p.dlq_events, None).await;
        for run in 0..p.runs {
            step(&format!(
                "run {}/{}: projections with 1 % poison records",
                run + 1,
                p.runs
            ));
            add(
                "DLQ: healthy keys with poison",
                scenarios::dead_letters(&poisoned, &clean, &logs).await,
            );
        }
    }
    let scaling = if selected("scaling") {
        scaling::measure(&p, &registry, &logs).await
    } else {
        Vec::new()
    };
    platform.stop().await;

    let mut report = report(&cli, &p, &scenarios);
    report["scaling"] = json!(scaling);
    print_table(&report);
    scaling::print(&scaling);
    if let Some(parent) = cli.output.parent() {
        std::fs::create_dir_all(parent).expect("the output folder can be made");
    }
    let json = serde_json::to_string_pretty(&report).expect("the report serialises");
    std::fs::write(&cli.output, json).expect("the results are written");
    println!("\nwritten to {}", cli.output.display());
}

pub fn step(what: &str) {
    static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let started = STARTED.get_or_init(std::time::Instant::now);
    println!("▸ [{:>6.1} s] {what}", started.elapsed().as_secs_f64());
}

fn print_run(name: &str, run: &Run) {
    let show = |figures: &scenarios::Figures| {
        figures
            .iter()
            .map(|(k, v)| format!("{k}={v:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "  {name}: platform {} | baseline {}",
        show(&run.platform),
        show(&run.baseline)
    );
}

/// Median, min and max of a figure over the runs.
fn spread(values: &[f64]) -> Value {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return json!(null);
    }
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    json!({"median": median, "min": sorted[0], "max": sorted[sorted.len() - 1]})
}

fn summarise(runs: &[&scenarios::Figures]) -> Value {
    let names: std::collections::BTreeSet<&str> =
        runs.iter().flat_map(|f| f.keys().copied()).collect();
    names
        .into_iter()
        .map(|name| {
            let values: Vec<f64> = runs.iter().filter_map(|f| f.get(name).copied()).collect();
            (name.to_owned(), spread(&values))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn report(cli: &Cli, p: &Parameters, scenarios: &[Scenario]) -> Value {
    json!({
        "machine": machine(),
        "revision": cli.revision,
        "quick": cli.quick,
        "broker": infra::testing::kafka_brokers(),
        "parameters": p,
        "scenarios": scenarios.iter().map(|s| json!({
            "name": s.name,
            "platform": summarise(&s.runs.iter().map(|r| &r.platform).collect::<Vec<_>>()),
            "baseline": summarise(&s.runs.iter().map(|r| &r.baseline).collect::<Vec<_>>()),
        })).collect::<Vec<_>>(),
    })
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|kib| (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0);
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu_model": model,
        "memory_gib": memory_gib,
        "os": std::env::consts::OS,
    })
}

/// The figures of one side of a row: (label, key of the figure).
type Figures = &'static [(&'static str, &'static str)];

/// How a scenario's figures read in the table: the platform's, the baseline's, and the unit.
fn headline(name: &str) -> (Figures, Figures, &'static str) {
    match name {
        "command reply latency" => (
            &[("p50", "p50_ms"), ("p99", "p99_ms"), ("p99.9", "p99_9_ms")],
            &[("p50", "p50_ms"), ("p99", "p99_ms"), ("p99.9", "p99_9_ms")],
            "ms",
        ),
        "commands/s at the knee" => (
            &[("", "commands_per_s")],
            &[("raw produce", "records_per_s")],
            "/s",
        ),
        "freshness" => (
            &[("p50", "p50_ms"), ("p99", "p99_ms")],
            &[("raw produce → consume p50", "p50_ms"), ("p99", "p99_ms")],
            "ms",
        ),
        "projection rebuild" => (
            &[("", "events_per_s")],
            &[
                ("raw upserts", "rows_per_s"),
                ("raw consume", "consumed_per_s"),
            ],
            "/s",
        ),
        "GraphQL plugin list" => (
            &[("p50", "p50_ms"), ("p99", "p99_ms")],
            &[("p50", "p50_ms"), ("p99", "p99_ms")],
            "ms",
        ),
        "DLQ: healthy keys with poison" => (
            &[("", "healthy_events_per_s")],
            &[("no poison", "events_per_s")],
            "/s",
        ),
        "idle platform" => (
            &[("broker", "broker_cores"), ("platform", "platform_cores")],
            &[],
            "cores",
        ),
        "resident memory" => (
            &[
                ("at rest", "at_rest_mib"),
                ("under load", "peak_under_load_mib"),
            ],
            &[],
            "MiB",
        ),
        _ => (&[], &[], ""),
    }
}

fn cell(figures: &Value, shown: &[(&str, &str)], unit: &str) -> String {
    if shown.is_empty() {
        return "—".to_owned();
    }
    let parts: Vec<String> = shown
        .iter()
        .map(|(label, key)| {
            let figure = &figures[*key];
            let text = match (
                figure["median"].as_f64(),
                figure["min"].as_f64(),
                figure["max"].as_f64(),
            ) {
                (Some(median), Some(min), Some(max)) if (max - min).abs() > f64::EPSILON => {
                    format!("{} [{}–{}]", round(median), round(min), round(max))
                }
                (Some(median), _, _) => round(median),
                _ => "n/a".to_owned(),
            };
            if label.is_empty() {
                text
            } else {
                format!("{label} {text}")
            }
        })
        .collect();
    format!("{} {unit}", parts.join(", "))
}

fn round(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn print_table(report: &Value) {
    println!("\n| scenario | the platform | baseline in the same run |\n|---|---|---|");
    for scenario in report["scenarios"].as_array().into_iter().flatten() {
        let name = scenario["name"].as_str().unwrap_or_default();
        let (platform, baseline, unit) = headline(name);
        println!(
            "| {name} | {} | {} |",
            cell(&scenario["platform"], platform, unit),
            cell(&scenario["baseline"], baseline, unit)
        );
    }
    println!("\nmedian [min–max] of the runs");
    print_cpu(report);
}

/// Where the CPU went in the scenarios that measure it: the coarse profile beside the figure.
fn print_cpu(report: &Value) {
    let groups = [
        ("broker", "broker_cores"),
        ("Postgres", "postgres_cores"),
        ("platform", "platform_cores"),
    ];
    let mut rows = Vec::new();
    for scenario in report["scenarios"].as_array().into_iter().flatten() {
        let name = scenario["name"].as_str().unwrap_or_default();
        for (side, label) in [("platform", "the platform"), ("baseline", "the baseline")] {
            let figures = &scenario[side];
            if figures["broker_cores"].is_null() {
                continue;
            }
            rows.push(format!(
                "| {name}, {label} | {} |",
                groups
                    .iter()
                    .map(|(_, key)| cell(figures, &[("", key)], "cores"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
    }
    if rows.is_empty() {
        return;
    }
    println!(
        "\nCPU while measured, in cores of the machine's {}:\n\n| scenario | {} |\n|---|---|---|---|",
        report["machine"]["cpus"],
        groups.map(|(label, _)| label).join(" | ")
    );
    for row in rows {
        println!("{row}");
    }
}
