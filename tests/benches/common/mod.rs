//! What the single-scenario benches (`plugins`, `plugin_events`, `webhooks`) share.

use hdrhistogram::Histogram;

/// The number in environment variable `name`, else `default`.
pub fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `quantile` of a histogram of microseconds, in milliseconds.
pub fn ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}
