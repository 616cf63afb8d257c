//! `GET /v1/invalidations` (SPEC 8): a server-sent-event stream of every change as it commits,
//! for resource servers that cache verifications. Authenticated like introspection (HTTP Basic
//! with a client that has the `introspect` permission), resumable with `Last-Event-ID` (the
//! change log's sequence: on this instance or any other sharing the database), with a
//! heartbeat comment every few seconds so a dead stream is noticed.
//!
//! Events: `id: <seq>`, `event: change`, `data: {"kind": …}` (see
//! `latchkey_service::invalidations::change_json`); `event: reset` when the resume position is
//! no longer in the log: drop everything cached, then go on.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use latchkey_service::invalidations::Next;

use crate::AppState;
use crate::oauth2::token::{basic_credentials, failure};

/// A comment line this often: a proxy or a client sees a dead stream within seconds.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Changes made by other processes are read from the log at least this often.
const POLL: Duration = Duration::from_millis(250);

pub async fn get_invalidations(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let basic = match basic_credentials(&headers) {
        Ok(basic) => basic,
        Err(f) => return failure(&state, f, true),
    };
    if let Err(f) = state
        .service
        .authenticate_introspector(basic.as_ref(), &BTreeMap::new())
        .await
    {
        return failure(&state, f, basic.is_some());
    }
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let start = match resume {
        Some(seq) => seq,
        None => match state.service.latest_change().await {
            Ok(latest) => latest,
            Err(e) => return crate::error::ApiError(e).into_response(),
        },
    };
    let signal = state.service.change_signal();
    let stopping = state.stopping.clone();
    let stream = futures_util::stream::unfold(
        ((state, stopping), start, signal, Vec::<Event>::new()),
        |((state, mut stopping), mut last, mut signal, mut pending)| async move {
            loop {
                // The server is stopping: the stream ends (the client reconnects elsewhere).
                if *stopping.borrow() {
                    return None;
                }
                if let Some(event) = pending.pop() {
                    return Some((
                        Ok::<_, Infallible>(event),
                        ((state, stopping), last, signal, pending),
                    ));
                }
                match state.service.changes_after(last).await {
                    Ok(Next::Changes(list)) if !list.is_empty() => {
                        // Popped from the end: kept newest first.
                        for (seq, change) in list.into_iter().rev() {
                            last = last.max(seq);
                            pending.push(
                                Event::default()
                                    .id(seq.to_string())
                                    .event("change")
                                    .data(change.to_string()),
                            );
                        }
                    }
                    Ok(Next::Reset { latest }) => {
                        last = latest;
                        pending.push(
                            Event::default()
                                .id(latest.to_string())
                                .event("reset")
                                .data("{}"),
                        );
                    }
                    // Nothing new: wait for a commit or the next poll.
                    Ok(Next::Changes(_)) => {
                        tokio::select! {
                            _ = tokio::time::timeout(POLL, signal.changed()) => {}
                            changed = stopping.changed() => {
                                if changed.is_err() {
                                    return None;
                                }
                            }
                        }
                    }
                    // The log cannot be read: changes may be committing elsewhere unseen, so
                    // the stream ends rather than send heartbeats that would say all is well;
                    // a verifier drops its cache and reconnects (to an instance that can).
                    Err(e) => {
                        tracing::warn!(error = %e, "invalidation stream: cannot read the change log; ending the stream");
                        return None;
                    }
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
        .into_response()
}
