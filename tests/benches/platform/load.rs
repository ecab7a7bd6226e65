//! An open-loop load generator: requests leave on a fixed schedule whatever the replies do,
//! and each latency is counted from the request's scheduled time, so a queue in front of the
//! platform shows in the figures instead of slowing the generator down (coordinated
//! omission).

use std::future::Future;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Latency figures of one run, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub count: u64,
    pub errors: u64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// Replies per second over the measured window.
    pub throughput: f64,
}

impl Latency {
    pub fn from_samples(samples: &[Duration], errors: u64, window: Duration) -> Self {
        let mut histogram =
            Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds");
        for sample in samples {
            let micros = u64::try_from(sample.as_micros()).unwrap_or(u64::MAX);
            histogram.saturating_record(micros.max(1));
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            count: histogram.len(),
            errors,
            p50: ms(histogram.value_at_quantile(0.50)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            throughput: samples.len() as f64 / window.as_secs_f64().max(f64::EPSILON),
        }
    }
}

/// Sends `request(i)` at `rate` per second for `warm_up + measured`, and measures the
/// requests scheduled after the warm-up. `request` returns whether the reply was a success.
pub async fn open_loop<F, Fut>(
    rate: f64,
    warm_up: Duration,
    measured: Duration,
    request: F,
) -> Latency
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let started = Instant::now();
    let measure_from = started + warm_up;
    let end = measure_from + measured;
    let mut in_flight = JoinSet::new();
    let mut i = 0u64;
    loop {
        let scheduled = started + interval.mul_f64(i as f64);
        if scheduled >= end {
            break;
        }
        tokio::time::sleep_until(scheduled).await;
        let reply = request(i);
        in_flight.spawn(async move {
            let ok = reply.await;
            (scheduled, scheduled.elapsed(), ok)
        });
        i += 1;
    }
    let mut samples = Vec::new();
    let mut errors = 0;
    while let Some(joined) = in_flight.join_next().await {
        let Ok((scheduled, latency, ok)) = joined else {
            errors += 1;
            continue;
        };
        if scheduled < measure_from {
            continue;
        }
        if ok {
            samples.push(latency);
        } else {
            errors += 1;
        }
    }
    Latency::from_samples(&samples, errors, measured)
}
