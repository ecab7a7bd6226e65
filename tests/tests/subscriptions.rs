//! GraphQL subscriptions over graphql-ws: a plugin's status changes and an operation's
//! progress, pushed after the catalog commits.

use std::time::Duration;

use end_to_end::{TestApp, manifest, plugins};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A graphql-transport-ws connection, initialised with `token` when given.
async fn connect(app: &TestApp, token: Option<&str>) -> Socket {
    let url = format!("{}/graphql/ws", app.address.replacen("http", "ws", 1));
    let mut request = url.into_client_request().expect("a WebSocket request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().expect("a header value"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the WebSocket opens");
    let payload = token.map_or(
        json!({}),
        |t| json!({"Authorization": format!("Bearer {t}")}),
    );
    send(
        &mut socket,
        json!({"type": "connection_init", "payload": payload}),
    )
    .await;
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .expect("the message is sent");
}

/// The next graphql-ws message, or none when the socket closes; fails after 20 s.
async fn next(socket: &mut Socket) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("a message within 20 s")?
            .ok()?;
        match message {
            Message::Text(text) => return serde_json::from_str(&text).ok(),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

async fn subscribe(socket: &mut Socket, id: &str, query: &str) {
    send(
        socket,
        json!({"id": id, "type": "subscribe", "payload": {"query": query}}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_sees_a_plugins_status_changes_and_its_installs_steps() {
    let app = TestApp::spawn().await;
    let admin = app.super_admin();
    let mut statuses = connect(&app, Some(&admin)).await;
    assert_eq!(
        next(&mut statuses).await.expect("an ack")["type"],
        "connection_ack"
    );
    subscribe(
        &mut statuses,
        "status",
        r#"subscription { pluginStatusChanged(id: "crm") { id status } }"#,
    )
    .await;

    app.register(&manifest("crm", "1.0.0")).await;
    app.register(&manifest("other", "1.0.0")).await;
    let operation_id = plugins::start_install(&app, "crm").await;

    let mut operation = connect(&app, Some(&admin)).await;
    assert_eq!(
        next(&mut operation).await.expect("an ack")["type"],
        "connection_ack"
    );
    subscribe(
        &mut operation,
        "op",
        &format!(
            r#"subscription {{ operationProgress(id: "{operation_id}") {{ status steps {{ eventType }} }} }}"#
        ),
    )
    .await;
    let mut progress = Vec::new();
    loop {
        let message = next(&mut operation).await.expect("the operation goes on");
        match message["type"].as_str() {
            Some("next") => {
                let update = &message["payload"]["data"]["operationProgress"];
                let steps = update["steps"].as_array().expect("steps").len();
                progress.push((
                    update["status"].as_str().expect("a status").to_owned(),
                    steps,
                ));
            }
            Some("complete") => break,
            other => panic!("unexpected {other:?}: {message}"),
        }
    }
    assert_eq!(
        progress.last().map(|(status, _)| status.as_str()),
        Some("SUCCEEDED"),
        "{progress:?}"
    );
    assert!(
        progress.windows(2).all(|w| w[0].1 < w[1].1),
        "each update has more steps: {progress:?}"
    );
    assert!(
        progress[..progress.len() - 1]
            .iter()
            .all(|(status, _)| status == "RUNNING"),
        "{progress:?}"
    );

    // Only crm's changes of status, in lifecycle order, none twice.
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("INSTALLED") {
        let message = next(&mut statuses).await.expect("status changes");
        assert_eq!(message["type"], "next", "{message}");
        let plugin = &message["payload"]["data"]["pluginStatusChanged"];
        assert_eq!(plugin["id"], "crm");
        seen.push(plugin["status"].as_str().expect("a status").to_owned());
    }
    let lifecycle = ["REGISTERED", "INSTALLING", "INSTALLED"];
    let start = lifecycle.len() - seen.len();
    assert_eq!(seen, lifecycle[start..], "{seen:?}");
    assert!(
        seen.len() >= 2,
        "the install's start and end are pushed: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_without_a_token_is_refused() {
    let app = TestApp::spawn().await;
    let mut socket = connect(&app, None).await;
    assert_eq!(
        next(&mut socket).await.expect("an ack")["type"],
        "connection_ack"
    );
    subscribe(
        &mut socket,
        "status",
        "subscription { pluginStatusChanged { id } }",
    )
    .await;
    let message = next(&mut socket).await.expect("an answer");
    // graphql-ws reports a field's error as a result with errors and no data.
    assert_eq!(message["type"], "next", "{message}");
    assert!(message["payload"]["data"].is_null(), "{message}");
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
}
