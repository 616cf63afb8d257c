//! What a verification answered from the cache costs: one token verified once (asking
//! Latchkey), then `COUNT` more times from memory, timed with a plain loop on one thread.
//! Run by `PARTS=verifier scripts/bench`, which prints `ns_per_hit=…`.
//!
//! ```sh
//! LATCHKEY_URL=… LATCHKEY_CLIENT_ID=… LATCHKEY_CLIENT_SECRET=… LATCHKEY_TOKEN=lkp_… \
//!   cargo run --release -p latchkey-verifier --example cache_hit -- 1000000
//! ```

use std::time::{Duration, Instant};

use latchkey_verifier::{Config, Verifier};

fn env(name: &str) -> Result<String, String> {
    #[expect(
        clippy::disallowed_methods,
        reason = "an example configured by its environment"
    )]
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: u32 = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |n| n.parse())?;
    let verifier = Verifier::new(Config::new(
        &env("LATCHKEY_URL")?,
        &env("LATCHKEY_CLIENT_ID")?,
        &env("LATCHKEY_CLIENT_SECRET")?,
    ))?;
    verifier.start();
    let started = Instant::now();
    while !verifier.metrics().stream_up {
        if started.elapsed() > Duration::from_secs(10) {
            return Err("the invalidation stream did not connect in 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let token = env("LATCHKEY_TOKEN")?;
    verifier.verify(&token).await?;
    let asked = verifier.metrics().latchkey_requests;
    let started = Instant::now();
    for _ in 0..count {
        std::hint::black_box(verifier.verify(std::hint::black_box(&token)).await?);
    }
    let elapsed = started.elapsed();
    let m = verifier.metrics();
    if m.latchkey_requests != asked {
        return Err("a verification left the cache during the loop".into());
    }
    println!(
        "RESULT hits={count} ns_per_hit={:.0} cache_hits={}",
        elapsed.as_nanos() as f64 / f64::from(count),
        m.cache_hits
    );
    Ok(())
}
