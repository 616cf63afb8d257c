//! Following `GET /v1/invalidations`, Latchkey's server-sent events: every change as it
//! commits (`event: change`), `event: reset` when the position was lost, and a heartbeat
//! comment every 5 s. Connected, the cache serves; lost (an error, the end of the stream, or
//! silence past [`SILENT_FOR`]), the cache is dropped and serves nothing until the next
//! connection.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt as _;

use crate::Inner;
use crate::cache::{Effect, effect_of};

/// Two heartbeats missed and some: the stream is taken for dead.
const SILENT_FOR: Duration = Duration::from_secs(12);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Follows the stream until the verifier is dropped.
pub(crate) async fn follow(inner: Weak<Inner>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let why = follow_once(&strong).await;
        tracing::warn!(error = %why, "latchkey-verifier: the invalidation stream is down; asking Latchkey for every token");
        if strong.cache.is_seeing() {
            // It was up: a fresh loss, retried after the shortest wait, not the last back-off.
            strong.counters.stream_drops.fetch_add(1, Ordering::Relaxed);
            backoff = Duration::from_millis(50);
        }
        strong.cache.set_seeing(false);
        drop(strong);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection, until it ends: why it did.
async fn follow_once(inner: &Inner) -> String {
    match stream_once(inner).await {
        Ok(never) => match never {},
        Err(why) => why,
    }
}

async fn stream_once(inner: &Inner) -> Result<std::convert::Infallible, String> {
    let res = inner
        .http
        .get(format!("{}/v1/invalidations", inner.config.url))
        .basic_auth(&inner.config.client_id, Some(&inner.config.client_secret))
        .header("accept", "text/event-stream")
        // The whole-request timeout of the client would cut a stream that is meant to last.
        .timeout(Duration::from_secs(365 * 86_400))
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if !res.status().is_success() {
        return Err(format!("the stream answered {}", res.status()));
    }
    // From here every change that commits is on its way to us; what committed before is older
    // than anything the cache will hold.
    inner.cache.set_seeing(true);
    if let Err(e) = inner.jwks.refetch(inner, true).await {
        tracing::debug!(error = %e, "latchkey-verifier: could not fetch the JWKS yet");
    }
    let mut body = res.bytes_stream();
    let mut parser = Parser::default();
    loop {
        let chunk = match tokio::time::timeout(SILENT_FOR, body.next()).await {
            Err(_) => return Err(format!("no heartbeat for {} s", SILENT_FOR.as_secs())),
            Ok(None) => return Err("the stream ended".to_owned()),
            Ok(Some(Err(e))) => return Err(e.without_url().to_string()),
            Ok(Some(Ok(chunk))) => chunk,
        };
        for event in parser.feed(&chunk) {
            apply(inner, &event).await;
        }
    }
}

async fn apply(inner: &Inner, event: &Event) {
    let effect = match event.name.as_str() {
        "change" => match serde_json::from_str(&event.data) {
            Ok(change) => effect_of(&change),
            Err(_) => Effect::Everything,
        },
        "reset" => Effect::Everything,
        _ => return,
    };
    inner.counters.invalidations.fetch_add(1, Ordering::Relaxed);
    if inner.cache.apply(&effect)
        && let Err(e) = inner.jwks.refetch(inner, true).await
    {
        tracing::warn!(error = %e, "latchkey-verifier: could not fetch the JWKS again");
    }
}

/// One dispatched server-sent event.
#[derive(Debug, Default, PartialEq, Eq)]
struct Event {
    name: String,
    data: String,
}

/// The text/event-stream format, fed in chunks that may split lines anywhere.
#[derive(Default)]
struct Parser {
    line: Vec<u8>,
    name: String,
    data: Vec<String>,
}

impl Parser {
    fn feed(&mut self, chunk: &[u8]) -> Vec<Event> {
        let mut out = Vec::new();
        for &b in chunk {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push(Event {
                        name: std::mem::take(&mut self.name),
                        data: self.data.join("\n"),
                    });
                }
                self.name.clear();
                self.data.clear();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.name = value.to_owned(),
                "data" => self.data.push(value.to_owned()),
                _ => {}
            }
        }
        // A line that never ends is not allowed to grow without bound.
        if self.line.len() > 1 << 20 {
            self.line.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_are_read_whole() {
        let text = b": heartbeat\n\nid: 7\nevent: change\ndata: {\"kind\":\"token\",\"token\":\"tok_a\"}\n\nid: 8\r\nevent: reset\r\ndata: {}\r\n\r\n";
        for split in 0..text.len() {
            let mut p = Parser::default();
            let mut events = p.feed(&text[..split]);
            events.extend(p.feed(&text[split..]));
            assert_eq!(
                events,
                vec![
                    Event {
                        name: "change".into(),
                        data: "{\"kind\":\"token\",\"token\":\"tok_a\"}".into()
                    },
                    Event {
                        name: "reset".into(),
                        data: "{}".into()
                    },
                ],
                "split at {split}"
            );
        }
    }
}
