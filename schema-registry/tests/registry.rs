//! The registry served on a random port against a fresh, migrated database.

use apache_avro::{AvroSchema, Schema};
use infra::auth::{Role, TokenKeys};
use reqwest::StatusCode;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::avro_common::get_supplied_schema;
use schema_registry_converter::schema_registry_common::SubjectNameStrategy;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;

struct Registry {
    url: String,
    /// Sends a super admin's token: registering and configuring need one.
    http: reqwest::Client,
    token: String,
    keys: TokenKeys,
    pool: sqlx::PgPool,
}

impl Registry {
    async fn start() -> Self {
        let (_config, pool) = infra::testing::fresh_database("registry").await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let keys = TokenKeys::from_secret("registry-test-secret");
        let token = keys
            .issue(
                "tester",
                vec![Role::SuperAdmin],
                None,
                chrono::Duration::hours(1),
            )
            .unwrap();
        tokio::spawn(schema_registry::serve(
            listener,
            pool.clone(),
            keys.clone(),
            event_schemas::Topics::new("", 1),
            None,
            std::future::pending(),
        ));
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        Self {
            url,
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .unwrap(),
            token,
            keys,
            pool,
        }
    }

    /// A Confluent client's settings, with the token.
    fn settings(&self) -> SrSettings {
        SrSettings::new_builder(self.url.clone())
            .set_token_authorization(&self.token)
            .build()
            .unwrap()
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        let body = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{status}: body {body:?} is not JSON: {e}"));
        (status, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.get(format!("{}{path}", self.url)))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let request = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(body.to_string());
        self.send(request).await
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.http.put(format!("{}{path}", self.url)).json(&body))
            .await
    }

    async fn register(&self, subject: &str, schema: &Value) -> (StatusCode, Value) {
        let body = json!({ "schema": schema.to_string() });
        self.post(&format!("/subjects/{subject}/versions"), body)
            .await
    }
}

fn user(extra_fields: &[Value]) -> Value {
    let mut fields = vec![json!({ "name": "id", "type": "string" })];
    fields.extend_from_slice(extra_fields);
    json!({ "type": "record", "name": "User", "namespace": "com.plexica.test", "fields": fields })
}

fn optional_email() -> Value {
    json!({ "name": "email", "type": ["null", "string"], "default": null })
}

#[tokio::test(flavor = "multi_thread")]
async fn registers_and_serves_schemas() {
    let registry = Registry::start().await;

    let (status, body) = registry.register("users-value", &user(&[])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first = body["id"].as_i64().unwrap();

    let v2 = user(&[optional_email()]);
    let (status, body) = registry.register("users-value", &v2).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = body["id"].as_i64().unwrap();
    assert_ne!(first, second);

    let response = registry
        .http
        .get(format!(
            "{}/schemas/ids/{second}?deleted=true",
            registry.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.schemaregistry.v1+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({ "schema": v2.to_string() }));

    assert_eq!(
        registry
            .get(&format!("/schemas/ids/{first}/versions"))
            .await,
        (
            StatusCode::OK,
            json!([{ "subject": "users-value", "version": 1 }])
        )
    );
    assert_eq!(
        registry.get("/subjects/users-value/versions").await,
        (StatusCode::OK, json!([1, 2]))
    );
    assert_eq!(
        registry.get("/subjects").await,
        (StatusCode::OK, json!(["users-value"]))
    );
    let latest =
        json!({ "subject": "users-value", "id": second, "version": 2, "schema": v2.to_string() });
    assert_eq!(
        registry.get("/subjects/users-value/versions/latest").await,
        (StatusCode::OK, latest.clone())
    );
    assert_eq!(
        registry.get("/subjects/users-value/versions/2").await,
        (StatusCode::OK, latest)
    );
    assert_eq!(
        registry
            .get("/subjects/users-value/versions/1/schema")
            .await,
        (StatusCode::OK, user(&[]))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn registering_a_known_schema_again_is_idempotent() {
    let registry = Registry::start().await;
    let schema = user(&[optional_email()]);
    let (_, body) = registry.register("users-value", &schema).await;
    let id = body["id"].clone();

    // The same schema, spelled differently, is the same schema.
    let respelled = r#"{"namespace": "com.plexica.test", "name": "User", "type": "record",
        "fields": [{"type": {"type": "string"}, "name": "id"},
                   {"default": null, "name": "email", "type": ["null", "string"]}]}"#;
    let (status, body) = registry
        .post(
            "/subjects/users-value/versions",
            json!({ "schema": respelled, "schemaType": "AVRO", "references": [] }),
        )
        .await;
    assert_eq!((status, &body["id"]), (StatusCode::OK, &id));
    assert_eq!(
        registry.get("/subjects/users-value/versions").await.1,
        json!([1])
    );

    // Another subject shares the global id.
    let (_, body) = registry.register("audit-value", &schema).await;
    assert_eq!(body["id"], id);

    // Lookup finds the version whatever the spelling; unknown schemas and subjects are errors.
    let (status, body) = registry
        .post(
            "/subjects/users-value?deleted=false",
            json!({ "schema": respelled }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((&body["id"], &body["version"]), (&id, &json!(1)));
    let unknown = json!({ "schema": user(&[]).to_string() });
    let (status, body) = registry
        .post("/subjects/users-value", unknown.clone())
        .await;
    assert_eq!(
        (status, &body["error_code"]),
        (StatusCode::NOT_FOUND, &json!(40403))
    );
    let (_, body) = registry.post("/subjects/nobody", unknown).await;
    assert_eq!(body["error_code"], 40401);
}

#[tokio::test(flavor = "multi_thread")]
async fn full_transitive_is_the_default_and_rejects_fields_without_defaults() {
    let registry = Registry::start().await;
    assert_eq!(
        registry.get("/config").await,
        (
            StatusCode::OK,
            json!({ "compatibilityLevel": "FULL_TRANSITIVE" })
        )
    );
    registry.register("users-value", &user(&[])).await;

    let required_age = json!({ "name": "age", "type": "int" });
    let (status, body) = registry
        .register("users-value", &user(&[required_age]))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error_code"], 409);
    assert!(body["message"].as_str().unwrap().contains("age"), "{body}");

    let (status, _) = registry
        .register("users-value", &user(&[optional_email()]))
        .await;
    assert_eq!(status, StatusCode::OK);

    // Dropping `id`, which has no default, would leave version 1 readers stranded.
    let only_email = json!({ "type": "record", "name": "User", "namespace": "com.plexica.test",
        "fields": [optional_email()] });
    let (status, _) = registry.register("users-value", &only_email).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        registry.get("/subjects/users-value/versions").await.1,
        json!([1, 2])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn compatibility_levels_are_configurable() {
    let registry = Registry::start().await;
    let (status, body) = registry
        .put("/config", json!({ "compatibility": "backward" }))
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "compatibility": "BACKWARD" }))
    );
    assert_eq!(
        registry.get("/config").await.1,
        json!({ "compatibilityLevel": "BACKWARD" })
    );

    let (status, body) = registry.get("/config/users-value").await;
    assert_eq!(
        (status, &body["error_code"]),
        (StatusCode::NOT_FOUND, &json!(40408))
    );
    assert_eq!(
        registry
            .get("/config/users-value?defaultToGlobal=true")
            .await
            .1,
        json!({ "compatibilityLevel": "BACKWARD" })
    );

    let (status, _) = registry
        .put("/config/users-value", json!({ "compatibility": "NONE" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        registry.get("/config/users-value").await.1,
        json!({ "compatibilityLevel": "NONE" })
    );
    // NONE lets anything through.
    registry.register("users-value", &user(&[])).await;
    let (status, _) = registry
        .register(
            "users-value",
            &user(&[json!({ "name": "age", "type": "int" })]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = registry
        .put(
            "/config/users-value",
            json!({ "compatibility": "SOMETIMES" }),
        )
        .await;
    assert_eq!(
        (status, &body["error_code"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!(42203))
    );

    let deleted = registry
        .send(
            registry
                .http
                .delete(format!("{}/config/users-value", registry.url)),
        )
        .await;
    assert_eq!(
        deleted,
        (StatusCode::OK, json!({ "compatibilityLevel": "NONE" }))
    );
    assert_eq!(
        registry.get("/config/users-value").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn compatibility_endpoint_checks_one_version_or_all() {
    let registry = Registry::start().await;
    registry
        .put("/config/accounts", json!({ "compatibility": "BACKWARD" }))
        .await;
    let account = |fields: Value| {
        json!({ "type": "record", "name": "Account", "fields": fields }).to_string()
    };
    let v1 = account(json!([{ "name": "id", "type": "string" }, { "name": "a", "type": "int" }]));
    let v2 = account(json!([{ "name": "id", "type": "string" }]));
    // Readable from v2 data (`a` has a default) but not from v1 data (`a` was an int).
    let candidate = json!({ "schema": account(json!([
        { "name": "id", "type": "string" },
        { "name": "a", "type": "string", "default": "" }
    ])) });
    for schema in [v1, v2] {
        let (status, body) = registry
            .post("/subjects/accounts/versions", json!({ "schema": schema }))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    let check = |path: &'static str| registry.post(path, candidate.clone());
    assert_eq!(
        check("/compatibility/subjects/accounts/versions/latest").await,
        (StatusCode::OK, json!({ "is_compatible": true }))
    );
    assert_eq!(
        check("/compatibility/subjects/accounts/versions").await,
        (StatusCode::OK, json!({ "is_compatible": true }))
    );
    let (status, body) = check("/compatibility/subjects/accounts/versions/1?verbose=true").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["is_compatible"], false);
    assert_eq!(body["messages"].as_array().unwrap().len(), 1, "{body}");

    registry
        .put(
            "/config/accounts",
            json!({ "compatibility": "BACKWARD_TRANSITIVE" }),
        )
        .await;
    assert_eq!(
        check("/compatibility/subjects/accounts/versions/latest").await,
        (StatusCode::OK, json!({ "is_compatible": false }))
    );

    assert_eq!(
        check("/compatibility/subjects/accounts/versions/9").await.1["error_code"],
        40402
    );
    assert_eq!(
        check("/compatibility/subjects/accounts/versions/zero")
            .await
            .1["error_code"],
        42202
    );
    assert_eq!(
        check("/compatibility/subjects/nobody/versions/latest")
            .await
            .1["error_code"],
        40401
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_confluent_errors() {
    let registry = Registry::start().await;
    registry.register("users-value", &user(&[])).await;
    let code = |(status, body): (StatusCode, Value)| (status.as_u16(), body["error_code"].clone());

    assert_eq!(
        code(registry.get("/subjects/nobody/versions").await),
        (404, json!(40401))
    );
    assert_eq!(
        code(registry.get("/subjects/users-value/versions/7").await),
        (404, json!(40402))
    );
    assert_eq!(
        code(registry.get("/subjects/users-value/versions/0").await),
        (422, json!(42202))
    );
    assert_eq!(
        code(registry.get("/schemas/ids/999").await),
        (404, json!(40403))
    );
    assert_eq!(
        code(registry.get("/schemas/ids/x").await),
        (404, json!(40403))
    );
    let (status, body) = registry
        .post(
            "/subjects/users-value/versions",
            json!({ "schema": "{\"type\": \"record\"}" }),
        )
        .await;
    assert_eq!(code((status, body)), (422, json!(42201)));
    let (status, body) = registry
        .post(
            "/subjects/users-value/versions",
            json!({ "schema": "{}", "schemaType": "PROTOBUF" }),
        )
        .await;
    assert_eq!(code((status, body)), (422, json!(42201)));
    let (status, body) = registry
        .post("/subjects/users-value/versions", json!({ "nothing": 1 }))
        .await;
    assert_eq!(code((status, body)), (400, json!(400)));

    // Unknown routes and methods answer in the same shape (deleting subjects is unsupported).
    assert_eq!(code(registry.get("/nothing").await), (404, json!(404)));
    let deleted = registry
        .send(
            registry
                .http
                .delete(format!("{}/subjects/users-value", registry.url)),
        )
        .await;
    assert_eq!(code(deleted), (405, json!(405)));
}

#[tokio::test(flavor = "multi_thread")]
async fn subjects_may_contain_dots_and_escaped_slashes() {
    let registry = Registry::start().await;
    let (status, _) = registry.register("team%2Fusers.v1-value", &user(&[])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        registry.get("/subjects").await.1,
        json!(["team/users.v1-value"])
    );
    let (status, body) = registry
        .get("/subjects/team%2Fusers.v1-value/versions/latest")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["subject"], "team/users.v1-value");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_registrations_neither_collide_nor_get_lost() {
    let registry = std::sync::Arc::new(Registry::start().await);
    registry
        .put("/config/race", json!({ "compatibility": "NONE" }))
        .await;
    let shared = user(&[optional_email()]);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let registry = registry.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                let own = user(&[json!({ "name": format!("field{i}"), "type": "long" })]);
                let (status, own) = registry.register("race", &own).await;
                assert_eq!(status, StatusCode::OK, "{own}");
                let (status, shared) = registry.register(&format!("shared-{i}"), &shared).await;
                assert_eq!(status, StatusCode::OK, "{shared}");
                (own["id"].as_i64().unwrap(), shared["id"].as_i64().unwrap())
            })
        })
        .collect();
    let mut own_ids = Vec::new();
    let mut shared_ids = Vec::new();
    for task in tasks {
        let (own, shared) = task.await.unwrap();
        own_ids.push(own);
        shared_ids.push(shared);
    }
    own_ids.sort_unstable();
    own_ids.dedup();
    assert_eq!(own_ids.len(), 8);
    shared_ids.dedup();
    assert_eq!(shared_ids.len(), 1);
    assert_eq!(
        registry.get("/subjects/race/versions").await.1,
        json!([1, 2, 3, 4, 5, 6, 7, 8])
    );
}

#[derive(Debug, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "com.plexica.events")]
struct PluginRegistered {
    plugin_id: String,
    revision: i64,
    tags: Vec<String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_through_the_converter_client() {
    let registry = Registry::start().await;
    let schema: Schema = PluginRegistered::get_schema();
    let strategy = SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
        "core.plugins".to_owned(),
        get_supplied_schema(&schema),
    );
    let event = PluginRegistered {
        plugin_id: "crm".to_owned(),
        revision: 3,
        tags: vec!["a".to_owned(), "b".to_owned()],
    };

    let encoder = AvroEncoder::new(registry.settings());
    let bytes = encoder.encode_struct(&event, &strategy).await.unwrap();
    // A second producer registers the same schema again and gets the same id.
    let again = AvroEncoder::new(registry.settings())
        .encode_struct(&event, &strategy)
        .await
        .unwrap();
    assert_eq!(bytes, again);

    let decoder = AvroDecoder::new(registry.settings());
    let decoded = decoder.decode(Some(&bytes)).await.unwrap();
    let decoded: PluginRegistered = apache_avro::from_value(&decoded.value).unwrap();
    assert_eq!(decoded, event);

    assert_eq!(
        registry.get("/subjects").await.1,
        json!(["core.plugins-com.plexica.events.PluginRegistered"])
    );
    assert_eq!(
        registry
            .get("/subjects/core.plugins-com.plexica.events.PluginRegistered/versions")
            .await
            .1,
        json!([1])
    );
}

#[tokio::test]
async fn a_store_outage_is_unavailable_and_clients_decode_once_it_is_over() {
    let registry = Registry::start().await;
    let schema: Schema = PluginRegistered::get_schema();
    let strategy = SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
        "core.plugins".to_owned(),
        get_supplied_schema(&schema),
    );
    let event = PluginRegistered {
        plugin_id: "crm".to_owned(),
        revision: 1,
        tags: vec![],
    };
    let bytes = AvroEncoder::new(registry.settings())
        .encode_struct(&event, &strategy)
        .await
        .unwrap();

    // The store goes away under the registry.
    sqlx::query("ALTER TABLE schema_registry_schemas RENAME TO schemas_away")
        .execute(&registry.pool)
        .await
        .unwrap();
    let (status, body) = registry.get("/schemas/ids/1").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error_code"], 50001);
    let decoder = AvroDecoder::new(registry.settings());
    let error = decoder.decode(Some(&bytes)).await.unwrap_err();
    assert!(error.retriable, "{error:?}");

    // Back again: once the decoder forgets the retryable failure it cached (as the
    // project's codec does), the same bytes decode.
    sqlx::query("ALTER TABLE schemas_away RENAME TO schema_registry_schemas")
        .execute(&registry.pool)
        .await
        .unwrap();
    decoder.remove_errors_from_cache();
    let decoded = decoder.decode(Some(&bytes)).await.unwrap();
    let decoded: PluginRegistered = apache_avro::from_value(&decoded.value).unwrap();
    assert_eq!(decoded, event);
}

/// A plugin's own identity registers the schemas of its own topic, and nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_registers_schemas_under_its_own_topic_only() {
    let registry = Registry::start().await;
    let token = registry
        .keys
        .issue(
            "plugin:crm",
            vec![Role::Plugin],
            None,
            chrono::Duration::hours(1),
        )
        .unwrap();
    let as_plugin = |method: reqwest::Method, path: &str, body: Value| {
        reqwest::Client::new()
            .request(method, format!("{}{path}", registry.url))
            .bearer_auth(&token)
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(body.to_string())
    };
    let schema = json!({ "schema": user(&[]).to_string() });
    let (status, body) = registry
        .send(as_plugin(
            reqwest::Method::POST,
            "/subjects/plugin.crm-com.plexica.test.User/versions",
            schema.clone(),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["id"].is_i64(), "{body}");
    for subject in [
        "plugin.billing-com.plexica.test.User",
        "core.plugins-com.plexica.test.User",
        "plugin.crm2-com.plexica.test.User",
    ] {
        let (status, body) = registry
            .send(as_plugin(
                reqwest::Method::POST,
                &format!("/subjects/{subject}/versions"),
                schema.clone(),
            ))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{subject}: {body}");
        assert_eq!(body["error_code"], 40301, "{body}");
    }
    let (status, _) = registry
        .send(as_plugin(
            reqwest::Method::PUT,
            "/config/plugin.crm-com.plexica.test.User",
            json!({"compatibility": "NONE"}),
        ))
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a plugin sets no compatibility level"
    );
}
