//! The catalog against a real Postgres: each event's effect on the rows the query API reads.

use event_schemas::PluginEvent;
use event_schemas::events::{
    PluginDisabled, PluginEnabled, PluginInstallFailed, PluginInstallRequested,
    PluginInstallStepCompleted, PluginInstalled, PluginRegistered, PluginUninstallRequested,
    PluginUninstalled, PluginUpdateFailed, PluginUpdateRequested, PluginUpdated,
};
use sqlx::Row;

use super::*;

/// The plugin's row, as the query API would read it.
#[derive(Debug, PartialEq)]
struct PluginRow {
    status: String,
    version: String,
    name: String,
    manifest_version: Option<String>,
    install_step: Option<String>,
    pending_version: Option<String>,
    last_error: Option<String>,
    status_reason: Option<String>,
    aggregate_version: i64,
}

async fn row(conn: &mut PgConnection) -> PluginRow {
    let r = sqlx::query(&format!(
        "SELECT status, version, name, manifest->>'version' AS manifest_version,
                install_step, pending_version, last_error, status_reason, aggregate_version
         FROM {SCHEMA}.plugins WHERE id = 'crm'"
    ))
    .fetch_one(conn)
    .await
    .expect("the plugin has a row");
    PluginRow {
        status: r.get("status"),
        version: r.get("version"),
        name: r.get("name"),
        manifest_version: r.get("manifest_version"),
        install_step: r.get("install_step"),
        pending_version: r.get("pending_version"),
        last_error: r.get("last_error"),
        status_reason: r.get("status_reason"),
        aggregate_version: r.get("aggregate_version"),
    }
}

/// Applies `event` of aggregate version `version` as a batch applied record by record does.
async fn apply_alone(conn: &mut PgConnection, event: CoreEvent, version: i64) {
    let (mut plugins, mut totals) = (PluginWrites::default(), StatusTotals::default());
    apply_event(
        conn,
        SCHEMA,
        &mut plugins,
        event,
        chrono::Utc::now(),
        version,
    )
    .await
    .expect("applies");
    plugins
        .write(conn, SCHEMA, &mut totals)
        .await
        .expect("writes");
    totals.record(conn, SCHEMA).await.expect("records");
}

struct Log<'c> {
    conn: &'c mut PgConnection,
    version: i64,
}

impl Log<'_> {
    /// Appends an event at the next aggregate version and applies it.
    async fn apply(&mut self, event: PluginEvent) -> PluginRow {
        self.version += 1;
        apply_alone(self.conn, CoreEvent::Plugin(event), self.version).await;
        let row = row(self.conn).await;
        assert_eq!(
            totals_of(self.conn).await,
            [(row.status.clone(), 1)],
            "the totals follow the plugin's status"
        );
        row
    }
}

/// The catalog's totals.
async fn totals_of(conn: &mut PgConnection) -> Vec<(String, i64)> {
    sqlx::query_as(&format!(
        "SELECT status, plugins FROM {SCHEMA}.plugin_totals ORDER BY status"
    ))
    .fetch_all(conn)
    .await
    .expect("the totals")
}

fn registered(version: &str) -> PluginEvent {
    PluginEvent::Registered(PluginRegistered {
        plugin_id: "crm".into(),
        name: "CRM".into(),
        version: version.into(),
        description: None,
        manifest: format!(r#"{{"id":"crm","name":"CRM","version":"{version}"}}"#),
    })
}

fn plain<T>(make: impl FnOnce(String, String) -> T) -> T {
    make("crm".into(), "1.2.0".into())
}

#[tokio::test]
async fn the_tenant_lifecycle_shows_in_the_catalog() {
    use event_schemas::events::{TenantDeleted, TenantReactivated, TenantSuspended};

    let (_config, pool) = infra::testing::fresh_database("catalog").await;
    infra::consumer::prepare_schema(&pool, SCHEMA, &ddl(SCHEMA))
        .await
        .expect("the DDL applies");
    let mut conn = pool.acquire().await.expect("connection");
    let id = uuid::Uuid::now_v7();
    let tenant_id = id.to_string();
    let created = TenantEvent::Created(TenantCreated {
        tenant_id: tenant_id.clone(),
        slug: "acme".into(),
        name: "Acme".into(),
    });
    let suspended = TenantEvent::Suspended(TenantSuspended {
        tenant_id: tenant_id.clone(),
        reason: Some("unpaid".into()),
    });
    let reactivated = TenantEvent::Reactivated(TenantReactivated {
        tenant_id: tenant_id.clone(),
    });
    let deleted = TenantEvent::Deleted(TenantDeleted { tenant_id });

    let mut apply_and_read = async |event: &TenantEvent, version: i64| -> (String, i64) {
        apply_alone(&mut conn, CoreEvent::Tenant(event.clone()), version).await;
        let r = sqlx::query(&format!(
            "SELECT status, aggregate_version FROM {SCHEMA}.tenants WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *conn)
        .await
        .expect("the tenant has a row");
        (r.get("status"), r.get("aggregate_version"))
    };
    assert_eq!(apply_and_read(&created, 1).await, ("ACTIVE".into(), 1));
    assert_eq!(apply_and_read(&suspended, 2).await, ("SUSPENDED".into(), 2));
    assert_eq!(apply_and_read(&reactivated, 3).await, ("ACTIVE".into(), 3));
    // The version guard: a redelivered older event changes nothing.
    assert_eq!(apply_and_read(&suspended, 2).await, ("ACTIVE".into(), 3));
    assert_eq!(apply_and_read(&deleted, 4).await, ("DELETED".into(), 4));
    assert_eq!(apply_and_read(&reactivated, 3).await, ("DELETED".into(), 4));
}

#[tokio::test]
async fn a_registry_entry_shows_in_the_catalog_once_per_event() {
    use event_schemas::events::{
        NamesReserved, PluginClassified, ReviewRevised, ReviewSubmitted, VersionPublished,
        VersionYanked,
    };

    let (_config, pool) = infra::testing::fresh_database("catalog").await;
    infra::consumer::prepare_schema(&pool, SCHEMA, &ddl(SCHEMA))
        .await
        .expect("the DDL applies");
    let mut conn = pool.acquire().await.expect("connection");
    let classified = |categories: &[&str]| {
        RegistryEvent::PluginClassified(PluginClassified {
            plugin_id: "crm".into(),
            categories: categories.iter().map(|c| (*c).to_owned()).collect(),
            tags: vec!["deals".into()],
        })
    };
    let review = |rating| ReviewSubmitted {
        plugin_id: "crm".into(),
        reviewer: "alice".into(),
        rating,
        comment: None,
    };
    let log = [
        RegistryEvent::VersionPublished(VersionPublished {
            plugin_id: "crm".into(),
            version: "1.1.0".into(),
            manifest: r#"{"id":"crm","name":"CRM","version":"1.1.0"}"#.into(),
            release_notes: Some("Faster".into()),
        }),
        classified(&["crm", "sales"]),
        RegistryEvent::ReviewSubmitted(review(4)),
        RegistryEvent::ReviewRevised(ReviewRevised {
            plugin_id: "crm".into(),
            reviewer: "alice".into(),
            rating: 2,
            comment: Some("slower now".into()),
        }),
        RegistryEvent::VersionYanked(VersionYanked {
            plugin_id: "crm".into(),
            version: "1.1.0".into(),
            reason: "leaks deals".into(),
        }),
    ];
    for (version, event) in (1..).zip(&log) {
        apply_alone(&mut conn, CoreEvent::Registry(event.clone()), version).await;
    }
    // Redelivered older events change nothing, though they would.
    for (event, version) in [
        (classified(&["other"]), 2),
        (RegistryEvent::ReviewSubmitted(review(5)), 3),
    ] {
        apply_alone(&mut conn, CoreEvent::Registry(event), version).await;
    }
    // Reservations share the topic and have no read model.
    apply_alone(
        &mut conn,
        CoreEvent::Registry(RegistryEvent::NamesReserved(NamesReserved {
            scope: "permission-keys".into(),
            owner: "crm".into(),
            names: vec!["crm.deals.read".into()],
        })),
        1,
    )
    .await;

    let entry = sqlx::query(&format!(
        "SELECT categories, tags, aggregate_version FROM {SCHEMA}.plugin_registry"
    ))
    .fetch_all(&mut *conn)
    .await
    .expect("reads");
    assert_eq!(entry.len(), 1, "one entry, for crm only");
    assert_eq!(
        entry[0].get::<Vec<String>, _>("categories"),
        ["crm", "sales"]
    );
    assert_eq!(entry[0].get::<Vec<String>, _>("tags"), ["deals"]);
    assert_eq!(entry[0].get::<i64, _>("aggregate_version"), 5);
    let version = sqlx::query(&format!(
        "SELECT release_notes, yanked, yank_reason, deprecated FROM {SCHEMA}.plugin_versions
         WHERE plugin_id = 'crm' AND version = '1.1.0'"
    ))
    .fetch_one(&mut *conn)
    .await
    .expect("the version has a row");
    assert_eq!(
        version.get::<Option<String>, _>("release_notes").as_deref(),
        Some("Faster")
    );
    assert!(version.get::<bool, _>("yanked"));
    assert!(!version.get::<bool, _>("deprecated"));
    assert_eq!(
        version.get::<Option<String>, _>("yank_reason").as_deref(),
        Some("leaks deals")
    );
    let reviews = sqlx::query(&format!(
        "SELECT rating, comment FROM {SCHEMA}.plugin_reviews WHERE plugin_id = 'crm'"
    ))
    .fetch_all(&mut *conn)
    .await
    .expect("reads");
    assert_eq!(reviews.len(), 1, "one review per reviewer");
    assert_eq!(reviews[0].get::<i16, _>("rating"), 2);
    assert_eq!(
        reviews[0].get::<Option<String>, _>("comment").as_deref(),
        Some("slower now")
    );
}

#[tokio::test]
async fn a_tenants_plugins_show_in_the_catalog() {
    use event_schemas::events::{
        TenantPluginConfigured, TenantPluginDisabled, TenantPluginEnabled,
    };

    let (_config, pool) = infra::testing::fresh_database("catalog").await;
    infra::consumer::prepare_schema(&pool, SCHEMA, &ddl(SCHEMA))
        .await
        .expect("the DDL applies");
    let mut conn = pool.acquire().await.expect("connection");
    let id = uuid::Uuid::now_v7();
    let tenant_id = id.to_string();
    let enabled = |configuration: &str| {
        TenantEvent::PluginEnabled(TenantPluginEnabled {
            tenant_id: tenant_id.clone(),
            plugin_id: "crm".into(),
            plugin_version: "1.2.0".into(),
            configuration: configuration.into(),
        })
    };
    let disabled = TenantEvent::PluginDisabled(TenantPluginDisabled {
        tenant_id: tenant_id.clone(),
        plugin_id: "crm".into(),
    });
    let configured = TenantEvent::PluginConfigured(TenantPluginConfigured {
        tenant_id: tenant_id.clone(),
        plugin_id: "crm".into(),
        configuration: r#"{"stages":["won"]}"#.into(),
    });

    let mut apply_and_read =
        async |event: &TenantEvent, version: i64| -> (bool, serde_json::Value, i64) {
            apply_alone(&mut conn, CoreEvent::Tenant(event.clone()), version).await;
            let r = sqlx::query(&format!(
                "SELECT enabled, configuration, aggregate_version
                 FROM {SCHEMA}.tenant_plugins WHERE tenant_id = $1 AND plugin_id = 'crm'"
            ))
            .bind(id)
            .fetch_one(&mut *conn)
            .await
            .expect("the tenant's plugin has a row");
            (
                r.get("enabled"),
                r.get("configuration"),
                r.get("aggregate_version"),
            )
        };
    let lead = serde_json::json!({"stages": ["lead"]});
    let won = serde_json::json!({"stages": ["won"]});
    let first = enabled(r#"{"stages":["lead"]}"#);
    assert_eq!(apply_and_read(&first, 2).await, (true, lead.clone(), 2));
    assert_eq!(apply_and_read(&configured, 3).await, (true, won.clone(), 3));
    // Disabled, the configuration stays.
    assert_eq!(apply_and_read(&disabled, 4).await, (false, won.clone(), 4));
    // The version guard: redelivered older events change nothing.
    assert_eq!(apply_and_read(&first, 2).await, (false, won.clone(), 4));
    assert_eq!(
        apply_and_read(&configured, 3).await,
        (false, won.clone(), 4)
    );
    assert_eq!(
        apply_and_read(&enabled(r#"{"stages":["won"]}"#), 5).await,
        (true, won, 5)
    );
}

#[tokio::test]
async fn the_plugin_lifecycle_shows_in_the_catalog() {
    let (_config, pool) = infra::testing::fresh_database("catalog").await;
    for _ in 0..2 {
        // Twice: a restart runs the DDL on a catalog that already has the new columns.
        infra::consumer::prepare_schema(&pool, SCHEMA, &ddl(SCHEMA))
            .await
            .expect("the DDL applies");
    }
    let mut conn = pool.acquire().await.expect("connection");
    let mut log = Log {
        conn: &mut conn,
        version: 0,
    };

    let r = log.apply(registered("1.2.0")).await;
    assert_eq!(
        (r.status.as_str(), r.version.as_str()),
        ("REGISTERED", "1.2.0")
    );

    let install = || {
        PluginEvent::InstallRequested(plain(|plugin_id, version| PluginInstallRequested {
            plugin_id,
            version,
        }))
    };
    let step = |step: &str| {
        PluginEvent::InstallStepCompleted(PluginInstallStepCompleted {
            plugin_id: "crm".into(),
            version: "1.2.0".into(),
            step: step.into(),
        })
    };
    assert_eq!(log.apply(install()).await.status, "INSTALLING");
    let r = log.apply(step("DEPENDENCIES_CHECKED")).await;
    assert_eq!(r.install_step.as_deref(), Some("DEPENDENCIES_CHECKED"));

    // Edge case 1: the failure shows, and the plugin is REGISTERED again.
    let r = log
        .apply(PluginEvent::InstallFailed(PluginInstallFailed {
            plugin_id: "crm".into(),
            version: "1.2.0".into(),
            step: "PERMISSIONS_RESERVED".into(),
            error: "permission crm.deals.read is taken".into(),
        }))
        .await;
    assert_eq!(r.status, "REGISTERED");
    assert_eq!(r.install_step, None);
    let error = r.last_error.expect("the error shows");
    assert!(
        error.contains("PERMISSIONS_RESERVED") && error.contains("is taken"),
        "{error}"
    );

    let r = log.apply(install()).await;
    assert_eq!((r.status.as_str(), r.last_error), ("INSTALLING", None));
    for s in [
        "DEPENDENCIES_CHECKED",
        "PERMISSIONS_RESERVED",
        "MIGRATIONS_APPLIED",
        "ROUTES_REGISTERED",
        "HEALTH_CHECKED",
    ] {
        assert_eq!(log.apply(step(s)).await.install_step.as_deref(), Some(s));
    }
    let r = log
        .apply(PluginEvent::Installed(plain(|plugin_id, version| {
            PluginInstalled { plugin_id, version }
        })))
        .await;
    assert_eq!((r.status.as_str(), r.install_step), ("INSTALLED", None));
    let enabled = PluginEvent::Enabled(plain(|plugin_id, version| PluginEnabled {
        plugin_id,
        version,
    }));
    assert_eq!(log.apply(enabled.clone()).await.status, "ACTIVE");

    // An update shows as pending until it completes, then replaces version and manifest.
    let r = log
        .apply(PluginEvent::UpdateRequested(PluginUpdateRequested {
            plugin_id: "crm".into(),
            version: "1.2.0".into(),
            target_version: "1.3.0".into(),
            name: "CRM Pro".into(),
            description: None,
            manifest: r#"{"id":"crm","name":"CRM Pro","version":"1.3.0"}"#.into(),
        }))
        .await;
    assert_eq!(
        (
            r.status.as_str(),
            r.version.as_str(),
            r.pending_version.as_deref()
        ),
        ("ACTIVE", "1.2.0", Some("1.3.0"))
    );
    let r = log
        .apply(PluginEvent::Updated(PluginUpdated {
            plugin_id: "crm".into(),
            previous_version: "1.2.0".into(),
            version: "1.3.0".into(),
            name: "CRM Pro".into(),
            description: None,
            manifest: r#"{"id":"crm","name":"CRM Pro","version":"1.3.0"}"#.into(),
        }))
        .await;
    assert_eq!(r.version, "1.3.0");
    assert_eq!(r.name, "CRM Pro");
    assert_eq!(r.manifest_version.as_deref(), Some("1.3.0"));
    assert_eq!((r.status.as_str(), r.pending_version), ("ACTIVE", None));

    // Edge case 9: a failed update leaves the version in service.
    log.apply(PluginEvent::UpdateRequested(PluginUpdateRequested {
        plugin_id: "crm".into(),
        version: "1.3.0".into(),
        target_version: "2.0.0".into(),
        name: "CRM Pro".into(),
        description: None,
        manifest: r#"{"id":"crm","name":"CRM Pro","version":"2.0.0"}"#.into(),
    }))
    .await;
    let r = log
        .apply(PluginEvent::UpdateFailed(PluginUpdateFailed {
            plugin_id: "crm".into(),
            version: "1.3.0".into(),
            target_version: "2.0.0".into(),
            error: "hot swap failed".into(),
        }))
        .await;
    assert_eq!((r.version.as_str(), r.pending_version), ("1.3.0", None));
    assert_eq!(r.manifest_version.as_deref(), Some("1.3.0"));
    assert!(
        r.last_error
            .is_some_and(|e| e.contains("2.0.0") && e.contains("hot swap"))
    );

    let r = log
        .apply(PluginEvent::Disabled(PluginDisabled {
            plugin_id: "crm".into(),
            version: "1.3.0".into(),
            reason: Some("dependency contacts was uninstalled".into()),
        }))
        .await;
    assert_eq!(r.status, "DISABLED");
    assert_eq!(
        r.status_reason.as_deref(),
        Some("dependency contacts was uninstalled")
    );

    // The version guard: a redelivered older event changes nothing.
    let before = row(log.conn).await;
    apply_alone(
        log.conn,
        CoreEvent::Plugin(enabled),
        before.aggregate_version - 3,
    )
    .await;
    assert_eq!(row(log.conn).await, before);
    assert_eq!(
        totals_of(log.conn).await,
        [("DISABLED".to_owned(), 1)],
        "nor the totals"
    );

    let r = log
        .apply(PluginEvent::UninstallRequested(PluginUninstallRequested {
            plugin_id: "crm".into(),
            version: "1.3.0".into(),
            purge_data: true,
        }))
        .await;
    assert_eq!(r.status, "UNINSTALLING");
    let r = log
        .apply(PluginEvent::Uninstalled(PluginUninstalled {
            plugin_id: "crm".into(),
            version: "1.3.0".into(),
            purge_data: true,
        }))
        .await;
    assert_eq!((r.status.as_str(), r.status_reason), ("UNINSTALLED", None));

    // Registered again: the lifecycle starts over with nothing left of the previous one.
    let r = log.apply(registered("1.0.0")).await;
    assert_eq!(
        r,
        PluginRow {
            status: "REGISTERED".into(),
            version: "1.0.0".into(),
            name: "CRM".into(),
            manifest_version: Some("1.0.0".into()),
            install_step: None,
            pending_version: None,
            last_error: None,
            status_reason: None,
            aggregate_version: log.version,
        }
    );

    // A catalog made before the totals has them counted when it starts.
    sqlx::query(&format!("DROP TABLE {SCHEMA}.plugin_totals"))
        .execute(&mut *log.conn)
        .await
        .expect("dropped");
    infra::consumer::prepare_schema(&pool, SCHEMA, &ddl(SCHEMA))
        .await
        .expect("the DDL applies");
    assert_eq!(totals_of(log.conn).await, [("REGISTERED".to_owned(), 1)]);
}

/// The catalog's plugins, totals and permissions in `schema`, as text to compare.
async fn plugin_tables(conn: &mut PgConnection, schema: &str) -> Vec<String> {
    let mut rows = Vec::new();
    for table in ["plugins", "plugin_totals", "permissions"] {
        rows.extend(
            sqlx::query_scalar::<_, String>(&format!(
                "SELECT '{table}: ' || t::text FROM {schema}.{table} t ORDER BY 1"
            ))
            .fetch_all(&mut *conn)
            .await
            .expect("the table is read"),
        );
    }
    rows
}

#[tokio::test]
async fn a_batchs_plugin_events_written_together_leave_what_each_written_alone_leaves() {
    let (_config, pool) = infra::testing::fresh_database("catalog").await;
    const GATHERED: &str = "catalog_gathered";
    for schema in [SCHEMA, GATHERED] {
        infra::consumer::prepare_schema(&pool, schema, &ddl(schema))
            .await
            .expect("the DDL applies");
    }
    let mut conn = pool.acquire().await.expect("connection");
    let with_permissions = |version: &str, key: &str| {
        format!(
            r#"{{"id":"crm","version":"{version}","permissions":[{{"key":"{key}","name":"Deals"}}]}}"#
        )
    };
    let registered = |id: &str, version: &str| {
        PluginEvent::Registered(PluginRegistered {
            plugin_id: id.into(),
            name: id.to_uppercase(),
            version: version.into(),
            description: Some(format!("{id} {version}")),
            manifest: with_permissions(version, "crm.deals.read"),
        })
    };
    let plain = |id: &str| (id.to_owned(), "1.0.0".to_owned());
    let installed = |id: &str| {
        let (plugin_id, version) = plain(id);
        PluginEvent::Installed(PluginInstalled { plugin_id, version })
    };
    let enabled = |id: &str| {
        let (plugin_id, version) = plain(id);
        PluginEvent::Enabled(PluginEnabled { plugin_id, version })
    };
    let install = |id: &str| {
        let (plugin_id, version) = plain(id);
        PluginEvent::InstallRequested(PluginInstallRequested { plugin_id, version })
    };
    let disabled = |id: &str| {
        let (plugin_id, version) = plain(id);
        PluginEvent::Disabled(PluginDisabled {
            plugin_id,
            version,
            reason: Some("maintenance".into()),
        })
    };
    let updated = PluginEvent::Updated(PluginUpdated {
        plugin_id: "crm".into(),
        previous_version: "1.0.0".into(),
        version: "2.0.0".into(),
        name: "CRM 2".into(),
        description: None,
        manifest: with_permissions("2.0.0", "crm.deals.write"),
    });
    let uninstalled = PluginEvent::Uninstalled(PluginUninstalled {
        plugin_id: "crm".into(),
        version: "2.0.0".into(),
        purge_data: false,
    });
    // Two plugins interleaved, a redelivered older event, an event of a plugin never
    // registered, a plugin registered again after its uninstall, and an install followed
    // in the same batch by a registration (its permissions are those the install left).
    let log: Vec<(PluginEvent, i64)> = vec![
        (registered("crm", "1.0.0"), 1),
        (registered("mail", "1.0.0"), 1),
        (install("crm"), 2),
        (enabled("ghost"), 1),
        (installed("crm"), 3),
        (install("mail"), 2),
        (enabled("crm"), 4),
        (installed("crm"), 3),
        (updated, 5),
        (installed("mail"), 3),
        (disabled("crm"), 6),
        (registered("mail", "1.1.0"), 4),
        (uninstalled, 7),
        (registered("crm", "3.0.0"), 8),
        (install("crm"), 9),
        (installed("crm"), 10),
        (enabled("crm"), 11),
        (enabled("crm"), 9),
    ];
    let base = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
    let time = |i: usize| base + chrono::Duration::seconds(i64::try_from(i).unwrap_or(0));

    for (i, (event, version)) in log.iter().enumerate() {
        let (mut plugins, mut totals) = (PluginWrites::default(), StatusTotals::default());
        plugins.push(event.clone(), time(i), *version);
        plugins
            .write(&mut conn, SCHEMA, &mut totals)
            .await
            .expect("writes");
        totals.record(&mut conn, SCHEMA).await.expect("records");
    }
    // Two batches, so that the second folds into rows the first wrote.
    for batch in [0..7, 7..log.len()] {
        let (mut plugins, mut totals) = (PluginWrites::default(), StatusTotals::default());
        for i in batch {
            plugins.push(log[i].0.clone(), time(i), log[i].1);
        }
        plugins
            .write(&mut conn, GATHERED, &mut totals)
            .await
            .expect("writes");
        totals.record(&mut conn, GATHERED).await.expect("records");
    }

    let alone = plugin_tables(&mut conn, SCHEMA).await;
    assert_eq!(plugin_tables(&mut conn, GATHERED).await, alone);
    let expected = [
        "plugins: (crm,CRM,3.0.0,\"crm 3.0.0\",ACTIVE,",
        "plugins: (mail,MAIL,1.1.0,\"mail 1.1.0\",REGISTERED,",
        "plugin_totals: (ACTIVE,1)",
        "plugin_totals: (REGISTERED,1)",
        "permissions: (crm,crm.deals.read,Deals,)",
        "permissions: (mail,crm.deals.read,Deals,)",
    ];
    assert_eq!(alone.len(), expected.len(), "{alone:#?}");
    for prefix in expected {
        assert!(
            alone.iter().any(|row| row.starts_with(prefix)),
            "{prefix} in {alone:#?}"
        );
    }
}
