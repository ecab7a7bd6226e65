//! The policy table, proven at the edge: every REST route and every GraphQL root field is
//! called under each kind of token (super admin, tenant admin of A, tenant admin of B, a token
//! without roles, no token), and the answer is checked against `infra::policy`, the one module
//! that REST, GraphQL, subscriptions and the schema registry ask.

use end_to_end::TestApp;
use infra::auth::Role;
use infra::policy::{Access, Principal, authorize};
use serde_json::{Value, json};
use uuid::Uuid;

/// What a route or field needs: a policy access, or nothing (public).
#[derive(Clone, Copy, Debug)]
enum Needs {
    Public,
    /// Any valid token; the answer holds only what the policy lets it read (`tenants`).
    Viewer,
    Policy(Access),
}

struct Caller {
    name: &'static str,
    token: Option<String>,
    principal: Option<Principal>,
}

fn callers(app: &TestApp, a: Uuid, b: Uuid) -> Vec<Caller> {
    let keys = app.config.auth.keys();
    let no_roles = keys
        .issue("nobody", vec![], None, chrono::Duration::hours(1))
        .expect("signing works");
    vec![
        Caller {
            name: "super admin",
            token: Some(app.super_admin()),
            principal: Some(Principal::SuperAdmin),
        },
        Caller {
            name: "tenant admin of A",
            token: Some(app.token(Role::TenantAdmin, Some(&a.to_string()))),
            principal: Some(Principal::TenantAdmin { tenant: a }),
        },
        Caller {
            name: "tenant admin of B",
            token: Some(app.token(Role::TenantAdmin, Some(&b.to_string()))),
            principal: Some(Principal::TenantAdmin { tenant: b }),
        },
        Caller {
            name: "no roles",
            token: Some(no_roles),
            principal: Some(Principal::Nobody),
        },
        Caller {
            name: "no token",
            token: None,
            principal: None,
        },
    ]
}

/// Whether `caller` may, by the policy; `None` when it must authenticate first.
fn allowed(caller: &Caller, needs: Needs) -> Option<bool> {
    match (needs, caller.principal) {
        (Needs::Public, _) => Some(true),
        (Needs::Policy(_) | Needs::Viewer, None) => None,
        (Needs::Viewer, Some(_)) => Some(true),
        (Needs::Policy(access), Some(principal)) => Some(authorize(principal, access).is_ok()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_and_root_field_answers_as_the_policy_says() {
    use Access::*;
    use reqwest::Method;
    let app = TestApp::spawn().await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let manifest = end_to_end::manifest("policy-plugin", "1.0.0");
    let op = Uuid::now_v7();
    let platform = Needs::Policy(AdministerPlatform);
    let own = Needs::Policy(AdministerOwnTenant);
    let webhooks = Needs::Policy(ManageWebhooks);
    let routes: Vec<(Method, String, Option<Value>, Needs)> = vec![
        (
            Method::POST,
            "/api/v1/plugins".into(),
            Some(manifest.clone()),
            platform,
        ),
        (
            Method::DELETE,
            "/api/v1/plugins/policy-plugin".into(),
            None,
            platform,
        ),
        (
            Method::POST,
            "/api/v1/plugins/policy-plugin/install".into(),
            None,
            platform,
        ),
        (
            Method::POST,
            "/api/v1/plugins/policy-plugin/enable".into(),
            None,
            platform,
        ),
        (
            Method::POST,
            "/api/v1/plugins/policy-plugin/disable".into(),
            None,
            platform,
        ),
        (
            Method::POST,
            "/api/v1/plugins/policy-plugin/update".into(),
            Some(manifest.clone()),
            platform,
        ),
        (
            Method::POST,
            "/api/v1/tenants".into(),
            Some(json!({"slug": "policy-t", "name": "T"})),
            platform,
        ),
        (
            Method::DELETE,
            format!("/api/v1/tenants/{b}"),
            None,
            platform,
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{b}/suspend"),
            None,
            platform,
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{b}/reactivate"),
            None,
            platform,
        ),
        (
            Method::POST,
            "/api/v1/tenant/plugins/policy-plugin/enable".into(),
            None,
            own,
        ),
        (
            Method::POST,
            "/api/v1/tenant/plugins/policy-plugin/disable".into(),
            None,
            own,
        ),
        (
            Method::PUT,
            "/api/v1/tenant/plugins/policy-plugin/config".into(),
            Some(json!({"configuration": {}})),
            own,
        ),
        (
            Method::POST,
            "/api/v1/webhooks".into(),
            Some(json!({"url": "https://hooks.example.com/", "events": ["core.plugin.installed"]})),
            webhooks,
        ),
        (
            Method::PATCH,
            format!("/api/v1/webhooks/{op}"),
            Some(json!({"description": "d"})),
            webhooks,
        ),
        (
            Method::POST,
            format!("/api/v1/webhooks/{op}/rotate-secret"),
            None,
            webhooks,
        ),
        (
            Method::DELETE,
            format!("/api/v1/webhooks/{op}"),
            None,
            webhooks,
        ),
        (
            Method::POST,
            format!("/api/v1/webhooks/{op}/disable"),
            None,
            webhooks,
        ),
        (
            Method::POST,
            format!("/api/v1/webhooks/{op}/enable"),
            None,
            webhooks,
        ),
        (
            Method::GET,
            format!("/api/v1/operations/{op}"),
            None,
            Needs::Policy(ReadPlatform),
        ),
        (
            Method::GET,
            "/api/v1/schemas/plugin-manifest.json".into(),
            None,
            Needs::Public,
        ),
        (
            Method::GET,
            "/api/v1/openapi.json".into(),
            None,
            Needs::Public,
        ),
        (
            Method::POST,
            "/api/v1/registry/plugins/policy-plugin/versions".into(),
            Some(json!({"manifest": manifest})),
            platform,
        ),
        (
            Method::POST,
            "/api/v1/registry/plugins/policy-plugin/versions/1.0.0/yank".into(),
            Some(json!({"reason": "r"})),
            platform,
        ),
        (
            Method::POST,
            "/api/v1/registry/plugins/policy-plugin/versions/1.0.0/deprecate".into(),
            Some(json!({"message": "m"})),
            platform,
        ),
        (
            Method::PUT,
            "/api/v1/registry/plugins/policy-plugin/classification".into(),
            Some(json!({"categories": [], "tags": []})),
            platform,
        ),
        (
            Method::PUT,
            "/api/v1/registry/plugins/policy-plugin/verification".into(),
            Some(json!({"verified": true})),
            platform,
        ),
        (
            Method::PUT,
            "/api/v1/registry/plugins/policy-plugin/reviews/mine".into(),
            Some(json!({"rating": 4})),
            Needs::Policy(Review),
        ),
        (
            Method::GET,
            "/api/v1/plugins".into(),
            None,
            Needs::Policy(ReadRegistry),
        ),
        (
            Method::GET,
            "/api/v1/plugins/policy-plugin".into(),
            None,
            Needs::Policy(ReadRegistry),
        ),
        (Method::GET, "/api/v1/tenant/plugins".into(), None, own),
        (
            Method::GET,
            "/api/v1/asyncapi.json".into(),
            None,
            Needs::Policy(ReadRegistry),
        ),
        (
            Method::POST,
            "/api/v1/admin/projections/catalog/rebuild".into(),
            None,
            platform,
        ),
        (
            Method::GET,
            format!("/api/v1/admin/projections/catalog/rebuilds/{op}"),
            None,
            platform,
        ),
        (
            Method::POST,
            "/api/v1/admin/dlq/retry".into(),
            Some(json!({"consumer": "none"})),
            platform,
        ),
        (
            Method::POST,
            format!("/api/v1/admin/dlq/{op}/retry"),
            None,
            platform,
        ),
        (
            Method::POST,
            format!("/api/v1/admin/dlq/{op}/discard"),
            None,
            platform,
        ),
        (
            Method::POST,
            "/api/v1/admin/dlq/keys/none/k/release".into(),
            None,
            platform,
        ),
        (
            Method::POST,
            "/api/v1/admin/consumers/none/replay".into(),
            Some(json!({"fromOffset": 0})),
            platform,
        ),
        (Method::GET, "/graphql".into(), None, Needs::Public),
        (
            Method::GET,
            "/graphql/schema.graphql".into(),
            None,
            Needs::Public,
        ),
        (Method::GET, "/health".into(), None, Needs::Public),
    ];
    let fields: Vec<(String, Needs)> = vec![
        (
            r#"{ plugin(id: "policy-plugin") { id } }"#.into(),
            Needs::Policy(ReadRegistry),
        ),
        (
            "{ plugins { totalCount } }".into(),
            Needs::Policy(ReadRegistry),
        ),
        (
            r#"{ pluginVersions(pluginId: "policy-plugin") { version } }"#.into(),
            Needs::Policy(ReadRegistry),
        ),
        (
            r#"{ registrySearch(query: "crm") { rank } }"#.into(),
            Needs::Policy(ReadRegistry),
        ),
        (
            r#"{ registrySuggest(prefix: "cr") }"#.into(),
            Needs::Policy(ReadRegistry),
        ),
        (
            format!(r#"{{ tenant(id: "{a}") {{ id }} }}"#),
            Needs::Policy(ReadTenant(a)),
        ),
        ("{ tenants { id } }".into(), Needs::Viewer),
        (
            format!(r#"{{ history(aggregateId: "tenant:{a}") {{ eventType }} }}"#),
            Needs::Policy(ReadTenant(a)),
        ),
        (
            format!(r#"{{ operation(id: "{op}") {{ id }} }}"#),
            Needs::Policy(ReadPlatform),
        ),
        (
            "{ projections { name } }".into(),
            Needs::Policy(ReadPlatform),
        ),
        (
            "{ deadLetters { totalCount } }".into(),
            Needs::Policy(ReadPlatform),
        ),
        (
            format!(r#"{{ deadLetter(id: "{op}") {{ id }} }}"#),
            Needs::Policy(ReadPlatform),
        ),
        (
            "{ deadLetterStats { count } }".into(),
            Needs::Policy(ReadPlatform),
        ),
    ];
    // The schema registry (Confluent's API on its own port): reads are public, every write
    // administers the platform.
    let avro = json!({"schema": r#"{"type":"record","name":"P","fields":[]}"#});
    let registry_routes: Vec<(Method, String, Option<Value>, Needs)> = vec![
        (Method::GET, "/subjects".into(), None, Needs::Public),
        (
            Method::POST,
            "/subjects/policy-value/versions".into(),
            Some(avro.clone()),
            platform,
        ),
        (
            Method::GET,
            "/subjects/policy-value/versions".into(),
            None,
            Needs::Public,
        ),
        (
            Method::POST,
            "/subjects/policy-value".into(),
            Some(avro.clone()),
            Needs::Public,
        ),
        (
            Method::GET,
            "/subjects/policy-value/versions/latest".into(),
            None,
            Needs::Public,
        ),
        (
            Method::GET,
            "/subjects/policy-value/versions/latest/schema".into(),
            None,
            Needs::Public,
        ),
        (Method::GET, "/schemas/ids/1".into(), None, Needs::Public),
        (
            Method::GET,
            "/schemas/ids/1/versions".into(),
            None,
            Needs::Public,
        ),
        (
            Method::POST,
            "/compatibility/subjects/policy-value/versions".into(),
            Some(avro.clone()),
            Needs::Public,
        ),
        (
            Method::POST,
            "/compatibility/subjects/policy-value/versions/latest".into(),
            Some(avro),
            Needs::Public,
        ),
        (Method::GET, "/config".into(), None, Needs::Public),
        (
            Method::PUT,
            "/config".into(),
            Some(json!({"compatibility": "FULL_TRANSITIVE"})),
            platform,
        ),
        (
            Method::GET,
            "/config/policy-value?defaultToGlobal=true".into(),
            None,
            Needs::Public,
        ),
        (
            Method::PUT,
            "/config/policy-value".into(),
            Some(json!({"compatibility": "NONE"})),
            platform,
        ),
        (
            Method::DELETE,
            "/config/policy-value".into(),
            None,
            platform,
        ),
    ];
    let callers = callers(&app, a, b);
    let mut checked = 0;
    let every_route = routes.iter().map(|route| (&app.address, route)).chain(
        registry_routes
            .iter()
            .map(|route| (&app.registry_url, route)),
    );
    for (base, (method, path, body, needs)) in every_route {
        for caller in &callers {
            let mut request = app.client.request(method.clone(), format!("{base}{path}"));
            if let Some(token) = &caller.token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let status = request.send().await.expect("the API answers").status();
            let refused = status == 401 || status == 403;
            match allowed(caller, *needs) {
                None => assert_eq!(status, 401, "{method} {path} by {}", caller.name),
                Some(false) => assert_eq!(status, 403, "{method} {path} by {}", caller.name),
                Some(true) => assert!(!refused, "{method} {path} by {}: {status}", caller.name),
            }
            checked += 1;
        }
    }
    for (query, needs) in &fields {
        for caller in &callers {
            let mut request = app
                .client
                .post(format!("{}/graphql", app.address))
                .json(&json!({ "query": query }));
            if let Some(token) = &caller.token {
                request = request.bearer_auth(token);
            }
            let reply: Value = request
                .send()
                .await
                .expect("GraphQL answers")
                .json()
                .await
                .expect("JSON");
            let code = reply["errors"][0]["extensions"]["code"]
                .as_str()
                .unwrap_or_default();
            match allowed(caller, *needs) {
                None => assert_eq!(
                    code, "UNAUTHENTICATED",
                    "{query} by {}: {reply}",
                    caller.name
                ),
                Some(false) => assert_eq!(code, "FORBIDDEN", "{query} by {}: {reply}", caller.name),
                Some(true) => assert!(
                    code != "FORBIDDEN" && code != "UNAUTHENTICATED",
                    "{query} by {}: {reply}",
                    caller.name
                ),
            }
            checked += 1;
        }
    }
    println!(
        "policy table: {} REST routes (schema registry included) and {} GraphQL root fields under {} callers: {checked} checks",
        routes.len() + registry_routes.len(),
        fields.len(),
        callers.len()
    );
}
