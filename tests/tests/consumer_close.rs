//! A platform whose runtime ends without its being stopped (a test that returns without
//! stopping it, a task aborted) while its broker answers nothing.
//!
//! Each consumer's close waits for the group's coordinator: a LeaveGroup against a frozen
//! broker 5 s, a join under way up to 303 s. Closed where their tasks were dropped, on the
//! runtime's workers, the consumers held the runtime's shutdown for as long (a test process
//! of `cargo xtask test` hung past its 300 s limit after its test had passed).

use std::time::{Duration, Instant};

use end_to_end::broker::SqliteBroker;
use end_to_end::{TestApp, isolated_config};

/// Less than one consumer's close against a frozen broker, and far more than the runtime
/// needs to end without waiting for any.
const ENDS_WITHOUT_WAITING_FOR_THE_BROKER: Duration = Duration::from_secs(3);

#[test]
fn a_runtime_ends_without_waiting_for_its_consumers_to_leave_a_frozen_broker() {
    let dir = std::env::temp_dir().join(infra::testing::unique_name("frozen"));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let broker = SqliteBroker::start(&dir);
    let (ended, on_end) = std::sync::mpsc::channel();
    let address = broker.address.clone();
    let pid = broker.pid();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async {
            let mut config = isolated_config().await;
            config.kafka.brokers = address;
            let app = TestApp::spawn_with(config).await;
            // The broker keeps its connections open and answers nothing.
            // SAFETY: a signal to a child process of this test; no memory is involved.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            // Not stopped: its components' tasks are dropped with the runtime.
            drop(app);
        });
        let started = Instant::now();
        drop(runtime);
        let _ = ended.send(started.elapsed());
    });
    let took = on_end.recv_timeout(Duration::from_secs(120));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    let took = took.expect("the runtime ends");
    assert!(
        took < ENDS_WITHOUT_WAITING_FOR_THE_BROKER,
        "the runtime's end waited {took:?} for the frozen broker"
    );
}
