//! Shared set-up for the organisation token suites (`org_tokens`, `org_policies`, `governance`,
//! `audit`): an organisation with a signed-in admin, and short-hands for its token endpoints.

use latchkey_core::policy::TokenTypeConfig;
use latchkey_core::{PolicyDuration, Role};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, Resp, TestApp, TestAppBuilder};

/// An organisation and one of its admins, signed in.
pub struct AdminOrg {
    pub id: String,
    pub admin_id: String,
    pub admin: String,
}

impl AdminOrg {
    pub fn tokens(&self) -> String {
        format!("/v1/orgs/{}/tokens", self.id)
    }
    pub fn token(&self, id: &str) -> String {
        format!("/v1/orgs/{}/tokens/{id}", self.id)
    }
    pub fn events(&self) -> String {
        format!("/v1/orgs/{}/events", self.id)
    }
}

/// A new organisation (made as the operator CLI does, so it has its `Default` token) with
/// `email` signed in as its admin.
pub async fn admin_org(app: &TestApp, name: &str, email: &str) -> AdminOrg {
    let (admin_id, admin) = app.signed_in(email).await;
    let id = app.org(name).await;
    app.add_member(&id, email, Role::Admin).await;
    AdminOrg {
        id,
        admin_id,
        admin,
    }
}

/// A server whose `api` and `s2s` tokens work at once (no activation delay).
pub fn no_delay() -> TestAppBuilder {
    let now = || TokenTypeConfig {
        activation_delay: Some(PolicyDuration::ZERO),
        ..Default::default()
    };
    TestApp::builder()
        .token_type("api", now())
        .token_type("s2s", now())
}

/// `POST …/tokens` with this body: the whole answer.
pub async fn create(app: &TestApp, org: &AdminOrg, body: Value) -> Resp {
    app.post(&org.tokens(), &org.admin, body).await
}

/// Creates a token of `token_type` named `name`: (id, secret).
pub async fn create_token(
    app: &TestApp,
    org: &AdminOrg,
    token_type: &str,
    name: &str,
) -> (String, String) {
    let res = create(app, org, json!({ "name": name, "type": token_type }))
        .await
        .expect(201);
    (res.str("id"), res.str("secret"))
}

/// The organisation's tokens, as listed.
pub async fn list(app: &TestApp, org: &AdminOrg) -> Vec<Value> {
    let res = app.get(&org.tokens(), &org.admin).await.expect(200);
    res.body
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("not a list: {}", res.text))
}

/// `GET …/tokens/{id}`.
pub async fn get(app: &TestApp, org: &AdminOrg, id: &str) -> Value {
    app.get(&org.token(id), &org.admin).await.expect(200).body
}

/// The `Default` token the organisation was created with: (id, its record).
pub async fn default_token(app: &TestApp, org: &AdminOrg) -> (String, Value) {
    let token = list(app, org)
        .await
        .into_iter()
        .find(|t| t["name"] == "Default")
        .unwrap_or_else(|| panic!("no Default token in {}", org.id));
    let id = token["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id: {token}"))
        .to_owned();
    (id, token)
}

/// Shows a token's secret again (with the admin's password).
pub async fn reveal(app: &TestApp, org: &AdminOrg, id: &str) -> String {
    app.post(
        &format!("{}/reveal", org.token(id)),
        &org.admin,
        json!({ "password": PASSWORD }),
    )
    .await
    .expect(200)
    .str("secret")
}

/// The organisation's audit log, newest first (one page of up to 200).
pub async fn events(app: &TestApp, org: &AdminOrg) -> Vec<Value> {
    let res = app
        .get(&format!("{}?limit=200", org.events()), &org.admin)
        .await
        .expect(200);
    res.body
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("not a list: {}", res.text))
}

/// The events with this action.
pub fn with_action<'a>(events: &'a [Value], action: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["action"] == action).collect()
}

/// Any request with an `Idempotency-Key` header.
pub async fn with_idempotency_key(
    app: &TestApp,
    path: &str,
    session: &str,
    key: &str,
    body: Value,
) -> Resp {
    let res = app
        .client
        .request(Method::POST, format!("{}{path}", app.url))
        .bearer_auth(session)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("request to {path}: {e}"));
    TestApp::read(res).await
}
