//! schemathesis against the running platform: it reads the REST API's OpenAPI document from
//! `/api/v1/openapi.json` and sends a bounded number of generated requests per route, as a
//! super admin and as a tenant admin, and then fuzzes the GraphQL schema. No answer may be a
//! 5xx, break the document (undocumented status, content type or body), or be an error that is
//! not problem JSON (the document declares every error as `application/problem+json`); no
//! GraphQL error may be `INTERNAL` or uncoded (`tests/schemathesis/plexica_checks.py`).
//!
//! `cargo xtask test` installs schemathesis into `.plexica/venv` and names it in
//! `PLEXICA_TEST_SCHEMATHESIS`; without it the test looks for `schemathesis` on the `PATH`.

use end_to_end::TestApp;
use infra::auth::Role;

fn schemathesis() -> String {
    std::env::var("PLEXICA_TEST_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".to_owned())
}

/// Runs schemathesis with `args`, failing the test with its report unless it found nothing.
async fn run(args: &[&str]) {
    let output = tokio::process::Command::new(schemathesis())
        .arg("run")
        .args(args)
        .env("NO_COLOR", "1")
        .env(
            "SCHEMATHESIS_HOOKS",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/schemathesis/plexica_checks.py"
            ),
        )
        .output()
        .await
        .expect("schemathesis runs (cargo xtask test installs it)");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    assert!(
        output.status.success(),
        "schemathesis {args:?} found problems:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// schemathesis's threads build Python ASTs concurrently, and CPython before 3.11.8 (3.11.7 is
/// the machine's) then sometimes fails with its own `SystemError: AST constructor recursion
/// depth mismatch` (python/cpython#106905): the run crashed without a finding. One worker
/// costs little on two cores, where the server under test shares them anyway.
const ONE_WORKER: &str = "1";

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_broken_contract() {
    let app = TestApp::spawn().await;
    app.register(&end_to_end::manifest("fuzzed", "1.0.0")).await;
    let document = format!("{}/api/v1/openapi.json", app.address);
    let tenant = uuid::Uuid::now_v7().to_string();
    let checks = "not_a_server_error,status_code_conformance,content_type_conformance,\
                  response_schema_conformance";
    for token in [
        app.super_admin(),
        app.token(Role::TenantAdmin, Some(&tenant)),
    ] {
        let header = format!("Authorization: Bearer {token}");
        run(&[
            &document,
            "--checks",
            checks,
            "--header",
            &header,
            "--max-examples",
            "8",
            "--phases",
            "examples,coverage,fuzzing",
            "--workers",
            ONE_WORKER,
            "--suppress-health-check",
            "all",
        ])
        .await;
    }
    let header = format!("Authorization: Bearer {}", app.super_admin());
    run(&[
        &format!("{}/graphql", app.address),
        "--checks",
        "no_internal_graphql_error",
        "--header",
        &header,
        "--max-examples",
        "8",
        "--workers",
        ONE_WORKER,
        "--suppress-health-check",
        "all",
    ])
    .await;
}
