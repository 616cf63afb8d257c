//! Audit logs: `GET /v1/user/events` and `GET /v1/orgs/{org}/events` (admins), newest first.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use latchkey_service::ServiceError;
use latchkey_store::{Event, EventFilter, EventMatch, EventScope};
use serde::Deserialize;

use crate::AppState;
use crate::api::views::EventView;
use crate::error::ApiResult;
use crate::extract::{Path, QueryParams, SignedIn};

#[derive(Deserialize, serde::Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<u32>,
    /// Only actions that start with this (`token.`, `session.`).
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<String>,
    /// Only events about this subject (a token's, a client's, a person's id).
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    /// Only events done by this actor (a user's id, `operator`).
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<String>,
}

impl PageQuery {
    fn matching(&self) -> ApiResult<EventMatch> {
        let part = |v: &Option<String>, name: &str| match v {
            Some(text) if text.is_empty() || text.len() > 200 => Err(ServiceError::invalid(
                format!("{name} is between 1 and 200 characters"),
            )),
            other => Ok(other.clone()),
        };
        Ok(EventMatch {
            action_prefix: part(&self.action, "action")?,
            subject_id: part(&self.subject, "subject")?,
            actor: part(&self.actor, "actor")?,
        })
    }
}

/// A page of events, with `Link: <…?before=<cursor>&…>; rel="next"` (the same filters) while
/// there may be more.
fn page(path: &str, q: PageQuery, events: &[Event], limit: u32) -> Response {
    let views: Vec<EventView> = events.iter().map(EventView::new).collect();
    let mut response = Json(views).into_response();
    let next = PageQuery {
        before: events.last().map(|e| e.seq),
        limit: Some(limit),
        ..q
    };
    if events.len() == limit as usize
        && let Ok(query) = serde_urlencoded::to_string(&next)
        && let Ok(v) = HeaderValue::from_str(&format!("<{path}?{query}>; rel=\"next\""))
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
        matching: q.matching()?,
    };
    let events = state.service.list_events(&filter).await?;
    Ok(page("/v1/user/events", q, &events, limit))
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
        matching: q.matching()?,
    };
    let events = state.service.list_events(&filter).await?;
    Ok(page(
        &format!("/v1/orgs/{}/events", org.id),
        q,
        &events,
        limit,
    ))
}
