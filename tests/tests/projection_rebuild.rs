//! Rebuilding a projection without downtime: a new generation fills shadow tables from offset
//! 0 while the current one serves, and is swapped in atomically once it has caught up.

use std::time::Duration;

use end_to_end::log::{Entry, LogWriter, plugin_history};
use end_to_end::{TestApp, eventually_within, manifest};
use event_schemas::CoreEvent;
use event_schemas::events::{PluginDisabled, PluginEnabled, PluginEvent};
use infra::auth::Role;
use serde_json::{Value, json};

const PLUGINS: usize = 5_000;
const EVENTS_PER_PLUGIN: usize = 10;
/// Rows the serving generation loses before the rebuild, so that queries can tell the two
/// generations apart: the old one serves `PLUGINS - DAMAGED` plugins, the new one all.
const DAMAGED: i64 = 100;

const WATCH: &str = "{ plugins(first: 1) { totalCount }
                       projections { name rebuild { id status eventsDone eventsTotal } } }";

/// What one query during the rebuild saw.
struct Observation {
    plugins: i64,
    status: Option<String>,
    done: i64,
    total: i64,
}

fn observe(reply: &Value) -> Observation {
    assert!(
        reply["errors"].is_null(),
        "a query failed during the rebuild: {reply}"
    );
    let catalog = reply["data"]["projections"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "catalog"))
        .cloned()
        .unwrap_or_default();
    let rebuild = &catalog["rebuild"];
    Observation {
        plugins: reply["data"]["plugins"]["totalCount"]
            .as_i64()
            .unwrap_or(-1),
        status: rebuild["status"].as_str().map(str::to_owned),
        done: rebuild["eventsDone"].as_i64().unwrap_or(0),
        total: rebuild["eventsTotal"].as_i64().unwrap_or(0),
    }
}

async fn total_plugins(app: &TestApp, token: &str) -> i64 {
    app.graphql(token, "{ plugins(first: 1) { totalCount } }")
        .await["data"]["plugins"]["totalCount"]
        .as_i64()
        .unwrap_or(-1)
}

/// Records written to the catalog's topics that it has not applied yet.
async fn catalog_lag(app: &TestApp, token: &str) -> Option<i64> {
    let reply = app.graphql(token, "{ projections { name lag } }").await;
    reply["data"]["projections"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == "catalog")?["lag"]
        .as_i64()
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_see_the_old_generation_until_a_rebuild_of_50_000_events_swaps_in() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    let writer = LogWriter::on(&app.config, &app.topics, &app.registry_url).await;
    let histories = (0..PLUGINS)
        .map(|i| {
            let id = format!("rb-{i:04}");
            let events = plugin_history(&id, EVENTS_PER_PLUGIN)
                .into_iter()
                .map(Entry::Event)
                .collect();
            (format!("plugin:{id}"), events)
        })
        .collect();
    assert_eq!(writer.write(histories).await, 50_000);
    let all = i64::try_from(PLUGINS).unwrap_or(i64::MAX);
    eventually_within(
        Duration::from_secs(240),
        "the catalog has every plugin",
        || async { (total_plugins(&app, &admin).await == all).then_some(()) },
    )
    .await;
    // Every plugin is there after its first event; the damage below must wait for the other
    // nine, or it races the catalog's batches for the same rows (a deadlock, once, in CI).
    eventually_within(
        Duration::from_secs(240),
        "the catalog has applied every event",
        || async { (catalog_lag(&app, &admin).await == Some(0)).then_some(()) },
    )
    .await;
    // A projection bug in the serving generation, which the rebuild repairs: plugins lost,
    // and the totals of their statuses with them.
    sqlx::query(
        "WITH lost AS (DELETE FROM catalog.plugins WHERE id < $1 RETURNING status)
         UPDATE catalog.plugin_totals t SET plugins = t.plugins - l.plugins
         FROM (SELECT status, count(*) AS plugins FROM lost GROUP BY status) l
         WHERE t.status = l.status",
    )
    .bind(format!("rb-{DAMAGED:04}"))
    .execute(&app.pool)
    .await
    .expect("the serving generation is damaged");
    let old_generation = all - DAMAGED;
    assert_eq!(total_plugins(&app, &admin).await, old_generation);

    // Only super admins rebuild, and only projections that exist.
    let tenant_admin = app.token(Role::TenantAdmin, Some(&uuid::Uuid::now_v7().to_string()));
    let path = "/api/v1/admin/projections/catalog/rebuild";
    assert_eq!(
        app.post(path, Some(&tenant_admin), &json!({}))
            .await
            .status(),
        403
    );
    let unknown = app
        .post(
            "/api/v1/admin/projections/nothing/rebuild",
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(unknown.status(), 404);
    let accepted = app.post(path, Some(&admin), &json!({})).await;
    assert_eq!(accepted.status(), 202);
    let location = accepted
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned)
        .expect("the rebuild's URL");
    let requested: Value = accepted.json().await.expect("JSON");
    assert_eq!(requested["status"], "REQUESTED", "{requested}");
    let again = app.post(path, Some(&admin), &json!({})).await;
    assert_eq!(again.status(), 409, "one rebuild at a time");
    let conflict: Value = again.json().await.expect("problem JSON");
    assert_eq!(conflict["rebuild"], location.as_str(), "{conflict}");

    // Queries keep answering, from the old generation, until the new one is complete.
    let mut during_rebuild = 0;
    let mut last_done = 0;
    let mut late_registered = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let swapped = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rebuild did not swap in"
        );
        let seen = observe(&app.graphql(&admin, WATCH).await);
        match seen.status.as_deref() {
            Some("SWAPPED") => break seen,
            Some("FAILED") => panic!("the rebuild failed"),
            Some("RUNNING") => {
                assert!(seen.done >= last_done, "progress went back");
                assert!(seen.done <= seen.total, "{} of {}", seen.done, seen.total);
                last_done = seen.done;
                // Never a partial state: every plugin the old generation has.
                assert!(
                    seen.plugins == old_generation || seen.plugins == old_generation + 1,
                    "a query saw {} plugins during the rebuild",
                    seen.plugins
                );
                if seen.done > 0 {
                    during_rebuild += 1;
                }
                if seen.done > 10_000 && !late_registered {
                    // A command during the rebuild reaches both generations.
                    app.register(&manifest("late", "1.0.0")).await;
                    late_registered = true;
                }
            }
            _ => assert_eq!(seen.plugins, old_generation),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        during_rebuild >= 5,
        "only {during_rebuild} queries ran while the rebuild was under way"
    );
    assert!(
        late_registered,
        "the rebuild ended before a command could be sent during it"
    );
    // It swaps once it has read as far as the serving generation, which may itself be a
    // batch behind the log's end: never further.
    assert!(
        swapped.done <= swapped.total && swapped.total - swapped.done < 1_000,
        "the rebuild swapped in at {} of {} events",
        swapped.done,
        swapped.total
    );
    let read: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(next_offset), 0)::bigint FROM catalog.checkpoints WHERE topic = $1",
    )
    .bind(app.topics.plugins())
    .fetch_one(&app.pool)
    .await
    .expect("the new generation's checkpoints");
    assert!(read > 50_000, "the new generation read {read} records");

    // The new generation serves: repaired, with the command sent during the rebuild, and the
    // serving consumer writes into it.
    assert_eq!(total_plugins(&app, &admin).await, all + 1);
    app.plugin_in_graphql("rb-0000").await;
    app.plugin_in_graphql("late").await;
    app.register(&manifest("after-swap", "1.0.0")).await;
    app.plugin_in_graphql("after-swap").await;

    let shown: Value = app
        .send(reqwest::Method::GET, &location, &admin)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(shown["status"], "SWAPPED", "{shown}");
    assert!(shown["finishedAt"].is_string(), "{shown}");
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'catalog%' ORDER BY 1",
    )
    .fetch_all(&app.pool)
    .await
    .expect("schemas are listed");
    assert_eq!(
        schemas,
        ["catalog"],
        "the old generation and the shadow are gone"
    );
}

/// Rebuilds `catalog` and waits until the rebuild ends; returns how it ended.
async fn rebuild(app: &TestApp, admin: &str) -> Value {
    let accepted = app
        .post(
            "/api/v1/admin/projections/catalog/rebuild",
            Some(admin),
            &json!({}),
        )
        .await;
    assert_eq!(accepted.status(), 202);
    let location = accepted
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned)
        .expect("the rebuild's URL");
    eventually_within(Duration::from_secs(60), "the rebuild ends", || async {
        let shown: Value = app
            .send(reqwest::Method::GET, &location, admin)
            .await
            .json()
            .await
            .ok()?;
        matches!(shown["status"].as_str(), Some("SWAPPED" | "FAILED")).then_some(shown)
    })
    .await
}

/// Plugin `id` registered, then disabled and enabled in turn (`length` events): no install,
/// so the sagas add nothing to its key.
fn toggling(id: &str, length: usize) -> Vec<Entry> {
    let mut events = plugin_history(id, 1);
    while events.len() < length {
        let (plugin_id, version) = (id.to_owned(), "1.0.0".to_owned());
        events.push(CoreEvent::Plugin(if events.len() % 2 == 1 {
            PluginEvent::Disabled(PluginDisabled {
                plugin_id,
                version,
                reason: None,
            })
        } else {
            PluginEvent::Enabled(PluginEnabled { plugin_id, version })
        }));
    }
    events.into_iter().map(Entry::Event).collect()
}

/// `aggregate_version` of plugin `id` in the serving catalog.
async fn version_of(app: &TestApp, id: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT aggregate_version FROM catalog.plugins WHERE id = $1")
        .bind(id)
        .fetch_optional(&app.pool)
        .await
        .ok()
        .flatten()
}

/// A record that never decodes, discarded by an admin, and the records of its key that were
/// parked behind it applied on retry: every later rebuild swaps in, with what the serving
/// generation has (issue 12 item 7; before the fix the new generation parked the key for good,
/// its records behind the discarded one were missing, and the swap was refused).
#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_after_a_discarded_poison_record_swaps_in() {
    rebuilds_after_a_discarded_poison_record(false).await;
}

/// The same for a key parked before the consumer kept its ledger of dead letters (a platform
/// upgraded while a key was parked): the release records at least the discarded head.
#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_after_a_poison_record_parked_before_the_ledger_swaps_in() {
    rebuilds_after_a_discarded_poison_record(true).await;
}

async fn rebuilds_after_a_discarded_poison_record(parked_before_the_ledger: bool) {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    let writer = LogWriter::on(&app.config, &app.topics, &app.registry_url).await;
    let mut poisoned = toggling("poisoned", 6);
    poisoned[2] = Entry::Poison;
    let calm = toggling("calm", 6);
    writer
        .write(vec![
            ("plugin:poisoned".to_owned(), poisoned),
            ("plugin:calm".to_owned(), calm),
        ])
        .await;
    let dead_letters = || async {
        sqlx::query_as::<_, (uuid::Uuid, String)>(
            "SELECT id, status FROM dlq.dead_letters
             WHERE consumer = 'catalog' AND record_key = 'plugin:poisoned'
             ORDER BY original_offset",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap_or_default()
    };
    let head = eventually_within(
        Duration::from_secs(30),
        "the poison record and the 3 parked behind it are dead letters",
        || async {
            let letters = dead_letters().await;
            (letters.len() == 4).then(|| letters[0].0)
        },
    )
    .await;
    if parked_before_the_ledger {
        sqlx::query("DELETE FROM catalog.dead_lettered")
            .execute(&app.pool)
            .await
            .expect("the ledger is emptied");
    }
    let discarded = app
        .post(
            &format!("/api/v1/admin/dlq/{head}/discard"),
            Some(&admin),
            &json!({"reason": "never decodes"}),
        )
        .await;
    assert_eq!(discarded.status(), 202);
    eventually_within(
        Duration::from_secs(30),
        "the parked records are applied and the key released",
        || async {
            let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM catalog.parked_keys")
                .fetch_one(&app.pool)
                .await
                .ok()?;
            (parked == 0 && version_of(&app, "poisoned").await == Some(6)).then_some(())
        },
    )
    .await;

    for round in 1..=2 {
        let ended = rebuild(&app, &admin).await;
        assert_eq!(ended["status"], "SWAPPED", "rebuild {round}: {ended}");
        assert_eq!(
            version_of(&app, "poisoned").await,
            Some(6),
            "rebuild {round}"
        );
        assert_eq!(version_of(&app, "calm").await, Some(6), "rebuild {round}");
        let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM catalog.parked_keys")
            .fetch_one(&app.pool)
            .await
            .expect("the parked keys");
        assert_eq!(parked, 0, "rebuild {round} parks nothing");
    }
    // The key flows in the new generation.
    let next = toggling("poisoned", 7).pop().expect("a 7th event");
    writer.append("plugin:poisoned", 7, &next).await;
    eventually_within(
        Duration::from_secs(30),
        "the next record is applied",
        || async { (version_of(&app, "poisoned").await == Some(7)).then_some(()) },
    )
    .await;
    let letters = dead_letters().await;
    assert_eq!(letters.len(), 4, "the rebuilds dead-lettered nothing new");
    assert_eq!(letters[0].1, "DISCARDED");
    assert!(
        letters[1..].iter().all(|(_, s)| s == "RESOLVED"),
        "{letters:?}"
    );
}
