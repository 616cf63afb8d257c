//! "Activity": the audit log of the person and, for admins, of an organisation; newest first,
//! 50 to a page.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use latchkey_store::{Event, EventFilter, EventScope};

use super::{Console, Layout, PageQuery, PageResult, render, when};
use crate::AppState;
use crate::extract::page::PagePath;

const PAGE: u32 = 50;

pub struct EventRow {
    pub at: String,
    pub action: String,
    pub subject: String,
    pub actor: String,
    pub ip: String,
    pub outcome: String,
    pub details: Option<String>,
}

impl EventRow {
    fn new(e: &Event) -> Self {
        Self {
            at: when(e.at),
            action: e.action.clone(),
            subject: format!("{} {}", e.subject_kind, e.subject_id),
            actor: e.actor.clone(),
            ip: e.ip.clone().unwrap_or_default(),
            outcome: e.outcome.clone(),
            details: e.details.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "activity.html")]
pub struct ActivityPage {
    pub layout: Layout,
    pub heading: String,
    pub events: Vec<EventRow>,
    pub next: Option<String>,
}

#[derive(serde::Deserialize)]
pub struct Cursor {
    before: Option<i64>,
}

async fn show(
    state: &AppState,
    console: &Console,
    scope: EventScope,
    before: Option<i64>,
    heading: String,
    current: &str,
    path: &str,
) -> PageResult {
    let filter = EventFilter {
        scope,
        before_seq: before,
        limit: PAGE,
    };
    let events = state.service.list_events(&filter).await?;
    let next = (events.len() == PAGE as usize)
        .then(|| events.last().map(|e| format!("{path}?before={}", e.seq)))
        .flatten();
    let page = ActivityPage {
        layout: console.layout(state, &heading, current).await,
        heading,
        events: events.iter().map(EventRow::new).collect(),
        next,
    };
    Ok(render(StatusCode::OK, &page))
}

/// `GET /activity`.
pub async fn get_user_activity(
    State(state): State<AppState>,
    console: Console,
    PageQuery(cursor): PageQuery<Cursor>,
) -> PageResult {
    let scope = EventScope::User(console.session.user.id.clone());
    show(
        &state,
        &console,
        scope,
        cursor.before,
        "Your activity".to_owned(),
        "activity",
        "/activity",
    )
    .await
}

/// `GET /orgs/{org}/activity`: admins only.
pub async fn get_org_activity(
    State(state): State<AppState>,
    console: Console,
    PagePath(org): PagePath<String>,
    PageQuery(cursor): PageQuery<Cursor>,
) -> PageResult {
    let org = state
        .service
        .require_admin(&console.session.user.id, &org)
        .await?;
    show(
        &state,
        &console,
        EventScope::Org(org.id.clone()),
        cursor.before,
        format!("Activity of {}", org.name),
        &format!("activity:{}", org.id),
        &format!("/orgs/{}/activity", org.id),
    )
    .await
}
