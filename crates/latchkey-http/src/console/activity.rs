//! "Activity": the audit log of the person and, for admins, of an organisation, for people:
//! who did what in words ("Ada rotated the token “billing worker”"), from where and when,
//! newest first, 50 to a page, narrowed by kind, token and (in an organisation) person. The
//! same store query as `/v1/user/events` and `/v1/orgs/{org}/events`.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use latchkey_store::{Event, EventFilter, EventMatch, EventScope};
use serde_json::Value;

use super::{Console, Layout, PageQuery, PageResult, render, when};
use crate::AppState;
use crate::extract::page::PagePath;

const PAGE: u32 = 50;

/// The kinds a page is narrowed to: the query's value, its label, the actions' start.
const KINDS: &[(&str, &str, &str)] = &[
    ("tokens", "Tokens", "token"),
    ("sign-ins", "Sign-ins and sessions", "session."),
    ("members", "Members", "member."),
    ("apps", "Apps", "client"),
    ("account", "Account", "user."),
];

pub struct EventRow {
    pub at: String,
    pub what: String,
    /// The outcome, when it was not a success ("denied", "ip_not_allowed").
    pub refused: Option<String>,
    pub ip: String,
}

pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "activity.html")]
pub struct ActivityPage {
    pub layout: Layout,
    pub heading: String,
    pub path: String,
    pub kinds: Vec<Choice>,
    pub tokens: Vec<Choice>,
    /// In an organisation: its people, to narrow to one.
    pub people: Option<Vec<Choice>>,
    pub narrowed: bool,
    pub events: Vec<EventRow>,
    pub next: Option<String>,
    pub newest: Option<String>,
}

#[derive(serde::Deserialize, serde::Serialize, Default, Clone)]
pub struct Query {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    before: Option<i64>,
    #[serde(default, skip_serializing_if = "is_blank")]
    kind: String,
    #[serde(default, skip_serializing_if = "is_blank")]
    token: String,
    #[serde(default, skip_serializing_if = "is_blank")]
    person: String,
}

fn is_blank(s: &str) -> bool {
    s.is_empty()
}

fn some(text: &str) -> Option<String> {
    Some(text.to_owned()).filter(|t| !t.is_empty())
}

fn choices(all: &[(String, String)], picked: &str) -> Vec<Choice> {
    all.iter()
        .map(|(value, label)| Choice {
            value: value.clone(),
            label: label.clone(),
            selected: value == picked,
        })
        .collect()
}

/// What the page knows to name things with: token and app names by id, people by id.
#[derive(Default)]
struct Names {
    me: String,
    things: HashMap<String, String>,
    people: HashMap<String, String>,
}

impl Names {
    fn who(&self, actor: &str) -> String {
        if actor == self.me {
            return "You".to_owned();
        }
        match actor {
            "operator" => "An operator".to_owned(),
            "anonymous" => "Someone".to_owned(),
            _ => match self.people.get(actor) {
                Some(email) => email.clone(),
                None if actor.contains(':') => "The platform".to_owned(),
                None => "Someone".to_owned(),
            },
        }
    }

    fn thing(&self, e: &Event, details: Option<&Value>) -> String {
        // (An app's `client.created` also names it in its details.)
        let from_details = details
            .and_then(|d| d.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        // The name it had then (a creation's), else the name it has now.
        from_details
            .or_else(|| self.things.get(&e.subject_id).cloned())
            .or_else(|| self.people.get(&e.subject_id).cloned())
            .unwrap_or_else(|| e.subject_id.clone())
    }
}

/// An event in words. Plain text: the template escapes it.
fn describe(e: &Event, names: &Names) -> String {
    let details: Option<Value> = e
        .details
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok());
    let who = names.who(&e.actor);
    let it = names.thing(e, details.as_ref());
    let detail = |key: &str| {
        details
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    match e.action.as_str() {
        "token.created" => format!("{who} created the token “{it}”"),
        "token.revoked" => format!("{who} revoked the token “{it}”"),
        "token.rotated" => format!(
            "{who} rotated the token “{it}” (grace: {})",
            detail("grace")
        ),
        "token.renamed" => format!(
            "{who} renamed the token “{}” to “{}”",
            detail("from"),
            detail("to")
        ),
        "token.revealed" => format!("{who} revealed the token “{it}”"),
        "token.cancelled" => format!("{who} cancelled the token “{it}” before it became active"),
        "token.allowed_ips_changed" => {
            format!("{who} changed the addresses the token “{it}” may be used from")
        }
        "token.new_address"
            if details
                .as_ref()
                .and_then(|d| d.get("first_use"))
                .and_then(Value::as_bool)
                == Some(true) =>
        {
            format!("The token “{it}” was used for the first time")
        }
        "token.new_address" => format!("The token “{it}” was used from a new address"),
        "token.ip_refused" => {
            format!("The token “{it}” was refused from an address outside its allowlist")
        }
        "token.expiry_notice" => format!("A notice was sent: the token “{it}” expires soon"),
        "tokens.revoked_all" => format!("{who} revoked every token"),
        "session.login" => format!("{who} signed in"),
        "session.refused" => format!("A sign-in as {it} was refused"),
        "session.logout" => format!("{who} signed out"),
        "session.ended" => format!("{who} ended a session"),
        "session.reauthenticated" => format!("{who} confirmed it was them"),
        "member.set" => format!("{who} made {it} {}", detail("role")),
        "member.removed" => format!("{who} removed {it} from the organisation"),
        "client.created" => format!("{who} created the app “{it}”"),
        "client.updated" => format!("{who} changed the app “{it}”"),
        "client.deleted" => format!("{who} deleted the app “{it}”"),
        "client_secret.created" => format!("{who} added a secret to the app “{it}”"),
        "client_secret.revoked" => format!("{who} removed a secret of the app “{it}”"),
        "org.created" => format!("{who} created the organisation"),
        "user.created" => format!("{who} created the account"),
        "user.password_reset_requested" => "A password reset mail was asked for".to_owned(),
        "user.password_reset" => format!("{who} reset the password"),
        "user.password_changed" => format!("{who} changed the password"),
        "user.sso_linked" => format!("{who} linked the account to single sign-on"),
        "oauth.consent_given" => format!("{who} allowed an app to act for them"),
        "oauth.grant_revoked" => format!("{who} took an app's access away"),
        other => format!("{who}: {other}"),
    }
}

#[expect(clippy::too_many_arguments, reason = "one page, two scopes")]
async fn show(
    state: &AppState,
    console: &Console,
    scope: EventScope,
    query: Query,
    heading: String,
    current: &str,
    path: String,
    mut names: Names,
    tokens: Vec<(String, String)>,
    people: Option<Vec<(String, String)>>,
) -> PageResult {
    let prefix = KINDS
        .iter()
        .find(|(value, _, _)| *value == query.kind)
        .map(|(_, _, prefix)| (*prefix).to_owned());
    let filter = EventFilter {
        scope,
        before_seq: query.before,
        limit: PAGE,
        matching: EventMatch {
            action_prefix: prefix,
            subject_id: some(&query.token),
            actor: some(&query.person),
        },
    };
    let events = state.service.list_events(&filter).await?;
    // People the page does not know (someone who has left the organisation): by address.
    for e in &events {
        for id in [&e.actor, &e.subject_id] {
            if id.starts_with("usr_")
                && id != &names.me
                && !names.people.contains_key(id)
                && let Ok(user) = state.service.find_user_by_id(id).await
            {
                names
                    .people
                    .insert(id.clone(), user.email.as_str().to_owned());
            }
        }
    }
    let link = |before: Option<i64>| {
        let q = Query {
            before,
            ..query.clone()
        };
        match serde_urlencoded::to_string(&q) {
            Ok(text) if !text.is_empty() => format!("{path}?{text}"),
            _ => path.clone(),
        }
    };
    let next = (events.len() == PAGE as usize)
        .then(|| events.last().map(|e| link(Some(e.seq))))
        .flatten();
    let newest = query.before.map(|_| link(None));
    let kinds: Vec<(String, String)> = KINDS
        .iter()
        .map(|(v, l, _)| ((*v).to_owned(), (*l).to_owned()))
        .collect();
    let page = ActivityPage {
        layout: console.layout(state, &heading, current).await,
        heading,
        kinds: choices(&kinds, &query.kind),
        tokens: choices(&tokens, &query.token),
        people: people.map(|p| choices(&p, &query.person)),
        narrowed: !(query.kind.is_empty() && query.token.is_empty() && query.person.is_empty()),
        events: events
            .iter()
            .map(|e| EventRow {
                at: when(e.at),
                what: describe(e, &names),
                refused: (e.outcome != "success").then(|| e.outcome.replace('_', " ")),
                ip: e.ip.clone().unwrap_or_default(),
            })
            .collect(),
        next,
        newest,
        path,
    };
    Ok(render(StatusCode::OK, &page))
}

/// `GET /activity`.
pub async fn get_user_activity(
    State(state): State<AppState>,
    console: Console,
    PageQuery(query): PageQuery<Query>,
) -> PageResult {
    let me = &console.session.user;
    let tokens: Vec<(String, String)> = state
        .service
        .list_personal_tokens(me)
        .await?
        .into_iter()
        .map(|t| (t.id.to_string(), t.name))
        .collect();
    let mut names = Names {
        me: me.id.to_string(),
        ..Names::default()
    };
    names.things.extend(tokens.iter().cloned());
    show(
        &state,
        &console,
        EventScope::User(me.id.clone()),
        query,
        "Your activity".to_owned(),
        "activity",
        "/activity".to_owned(),
        names,
        tokens,
        None,
    )
    .await
}

/// `GET /orgs/{org}/activity`: admins only.
pub async fn get_org_activity(
    State(state): State<AppState>,
    console: Console,
    PagePath(org): PagePath<String>,
    PageQuery(query): PageQuery<Query>,
) -> PageResult {
    let me = &console.session.user;
    let org = state.service.require_admin(&me.id, &org).await?;
    let org_id = org.id.to_string();
    let tokens: Vec<(String, String)> = state
        .service
        .list_org_tokens(me, &org_id)
        .await?
        .into_iter()
        .map(|t| (t.id.to_string(), t.name))
        .collect();
    let members = state.service.list_members(&me.id, &org_id).await?;
    let people: Vec<(String, String)> = members
        .iter()
        .map(|m| (m.user_id.to_string(), m.email.as_str().to_owned()))
        .collect();
    let mut names = Names {
        me: me.id.to_string(),
        people: people.iter().cloned().collect(),
        ..Names::default()
    };
    names.things.extend(tokens.iter().cloned());
    for (client, _) in state.service.list_clients(me, &org_id).await? {
        names.things.insert(client.id.clone(), client.name.clone());
    }
    show(
        &state,
        &console,
        EventScope::Org(org.id.clone()),
        query,
        format!("Activity of {}", org.name),
        &format!("activity:{}", org.id),
        format!("/orgs/{}/activity", org.id),
        names,
        tokens,
        Some(people),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::Timestamp;

    fn event(action: &str, actor: &str, subject: &str, details: Option<&str>) -> Event {
        Event {
            seq: 1,
            id: "evt_1".into(),
            at: Timestamp::UNIX_EPOCH,
            actor: actor.into(),
            action: action.into(),
            subject_kind: "token".into(),
            subject_id: subject.into(),
            org_id: None,
            ip: None,
            outcome: "success".into(),
            details: details.map(str::to_owned),
        }
    }

    #[test]
    fn events_are_told_in_words_with_names_not_ids() {
        let mut names = Names {
            me: "usr_me".into(),
            ..Names::default()
        };
        names
            .people
            .insert("usr_ada".into(), "ada@example.com".into());
        names.things.insert("tok_1".into(), "billing worker".into());
        let said = |action, actor, subject, details| {
            describe(&event(action, actor, subject, details), &names)
        };
        assert_eq!(
            said(
                "token.rotated",
                "usr_ada",
                "tok_1",
                Some(r#"{"grace":"1h"}"#)
            ),
            "ada@example.com rotated the token “billing worker” (grace: 1h)"
        );
        assert_eq!(
            said(
                "token.created",
                "usr_me",
                "tok_gone",
                Some(r#"{"name":"old one"}"#)
            ),
            "You created the token “old one”"
        );
        assert_eq!(
            said(
                "member.set",
                "operator",
                "usr_ada",
                Some(r#"{"role":"admin"}"#)
            ),
            "An operator made ada@example.com admin"
        );
        assert_eq!(
            said("token.revoked", "scim:cred_1", "tok_1", None),
            "The platform revoked the token “billing worker”"
        );
        assert_eq!(
            said("something.new", "anonymous", "x", None),
            "Someone: something.new"
        );
    }
}
