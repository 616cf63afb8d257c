//! Audit logs: `GET /v1/user/events` and `GET /v1/orgs/{org}/events` (admins), newest first.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use latchkey_store::{Event, EventFilter, EventMatch, EventScope};
use serde::Deserialize;

use crate::AppState;
use crate::api::views::EventView;
use crate::error::ApiResult;
use crate::extract::{Path, QueryParams, SignedIn};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    before: Option<i64>,
    limit: Option<u32>,
}

/// A page of events, with `Link: <…?before=<cursor>>; rel="next"` while there may be more.
fn page(path: &str, events: &[Event], limit: u32) -> Response {
    let views: Vec<EventView> = events.iter().map(EventView::new).collect();
    let mut response = Json(views).into_response();
    if events.len() == limit as usize
        && let Some(last) = events.last()
        && let Ok(v) = HeaderValue::from_str(&format!(
            "<{path}?before={}&limit={limit}>; rel=\"next\"",
            last.seq
        ))
    {
        response.headers_mut().insert(header::LINK, v);
    }
    response
}

pub async fn list_user_events(
    State(state): State<AppState>,
    me: SignedIn,
    QueryParams(q): QueryParams<PageQuery>,
) -> ApiResult<Response> {
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let filter = EventFilter {
        scope: EventScope::User(me.session.user.id.clone()),
        before_seq: q.before,
        limit,
        matching: EventMatch::default(),
    };
    let events = state.service.list_events(&filter).await?;
    Ok(page("/v1/user/events", &events, limit))
}

pub async fn list_org_events(
    State(state): State<AppState>,
    me: SignedIn,
    Path(org): Path<String>,
    QueryParams(q): QueryParams<PageQuery>,
) -> ApiResult<Response> {
    let org = state
        .service
        .require_admin(&me.session.user.id, &org)
        .await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let filter = EventFilter {
        scope: EventScope::Org(org.id.clone()),
        before_seq: q.before,
        limit,
        matching: EventMatch::default(),
    };
    let events = state.service.list_events(&filter).await?;
    Ok(page(&format!("/v1/orgs/{}/events", org.id), &events, limit))
}
