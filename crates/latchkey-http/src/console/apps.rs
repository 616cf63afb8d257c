//! "Apps": an organisation's OAuth2 clients, for its admins. Create, edit redirect URIs and
//! scopes, add and remove secrets (each shown once), delete after typing the app's name.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use latchkey_service::ServiceError;
use latchkey_service::oauth::clients::{ClientSpec, ClientSpecChange};
use latchkey_store::{ClientSecretRecord, OAuthClient};

use super::credentials::SecretPage;
use super::{
    CheckedForm, Console, Empty, Layout, PageQuery, PageResult, failure, notice_for, redirect,
    render, render_secret, when,
};
use crate::AppState;
use crate::extract::page::PagePath;

pub struct AppRow {
    pub id: String,
    pub name: String,
    pub grants: String,
    pub secrets: String,
    pub confidential: bool,
    pub redirect_uris: String,
    pub scopes: String,
}

impl AppRow {
    fn new(c: &OAuthClient, secrets: &[ClientSecretRecord]) -> Self {
        let active = secrets.iter().filter(|s| s.revoked_at.is_none()).count();
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
            grants: c.grant_types.join(", "),
            secrets: if c.is_confidential {
                format!("{active} active")
            } else {
                "public client".to_owned()
            },
            confidential: c.is_confidential,
            redirect_uris: c.redirect_uris.join("\n"),
            scopes: c.scopes.join(" "),
        }
    }
}

pub struct SecretRow {
    pub id: String,
    pub hint: String,
    pub created: String,
    pub last_used: String,
}

#[derive(Default, serde::Deserialize)]
pub struct AppForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    grant_client_credentials: Option<String>,
    #[serde(default)]
    grant_authorization_code: Option<String>,
    #[serde(default)]
    redirect_uris: String,
    #[serde(default)]
    scopes: String,
    #[serde(default)]
    public: Option<String>,
    #[serde(default)]
    introspect: Option<String>,
}

/// The create form as shown again after an error.
#[derive(Default)]
pub struct AppFormView {
    pub name: String,
    pub client_credentials: bool,
    pub authorization_code: bool,
    pub redirect_uris: String,
    pub scopes: String,
    pub public: bool,
}

impl AppFormView {
    fn from(form: &AppForm) -> Self {
        Self {
            name: form.name.clone(),
            client_credentials: form.grant_client_credentials.is_some(),
            authorization_code: form.grant_authorization_code.is_some(),
            redirect_uris: form.redirect_uris.clone(),
            scopes: form.scopes.clone(),
            public: form.public.is_some(),
        }
    }
}

#[derive(Template)]
#[template(path = "apps.html")]
pub struct AppsPage {
    pub layout: Layout,
    pub org_name: String,
    pub apps: Vec<AppRow>,
    pub form: AppFormView,
    pub base: String,
}

#[derive(Template)]
#[template(path = "app.html")]
pub struct AppPage {
    pub layout: Layout,
    pub app: AppRow,
    pub secrets: Vec<SecretRow>,
    pub base: String,
    /// Where the app gets its tokens (`{public_url}/oauth2/token`).
    pub token_endpoint: String,
    /// A ready command for an app with the client-credentials grant (its secret left for
    /// the reader to fill in: the page never holds it).
    pub curl: Option<String>,
}

#[derive(Template)]
#[template(path = "remove_secret.html")]
pub struct RemoveSecretPage {
    pub layout: Layout,
    pub app_name: String,
    pub hint: String,
    pub last_used: String,
    /// The app's only active secret: without it the app gets no tokens.
    pub only: bool,
    pub action: String,
    pub back: String,
}

fn base(org: &str) -> String {
    format!("/orgs/{org}/apps")
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

#[derive(serde::Deserialize)]
pub struct Done {
    done: Option<String>,
}

async fn list_page(
    state: &AppState,
    console: &Console,
    org: &str,
    status: StatusCode,
    form: AppFormView,
    notice: Option<String>,
    error: Option<String>,
) -> PageResult {
    let user = &console.session.user;
    let org_record = state.service.require_admin(&user.id, org).await?;
    let apps = state.service.list_clients(user, org).await?;
    let mut layout = console
        .layout(
            state,
            &format!("Apps of {}", org_record.name),
            &format!("apps:{}", org_record.id),
        )
        .await;
    layout.notice = notice;
    layout.error = error;
    let page = AppsPage {
        layout,
        org_name: org_record.name,
        apps: apps
            .iter()
            .filter(|(c, _)| c.deleted_at.is_none())
            .map(|(c, s)| AppRow::new(c, s))
            .collect(),
        form,
        base: base(org),
    };
    Ok(render(status, &page))
}

/// `GET /orgs/{org}/apps`.
pub async fn get_apps(
    State(state): State<AppState>,
    console: Console,
    PagePath(org): PagePath<String>,
    PageQuery(done): PageQuery<Done>,
) -> PageResult {
    let notice = notice_for(done.done.as_deref());
    let form = AppFormView {
        client_credentials: true,
        ..AppFormView::default()
    };
    list_page(&state, &console, &org, StatusCode::OK, form, notice, None).await
}

/// The copy-once page for a client secret.
async fn client_secret_page(
    state: &AppState,
    console: &Console,
    org: &str,
    client: &OAuthClient,
    secret: &str,
) -> PageResult {
    let heading = "The app's secret";
    let page = SecretPage {
        layout: console.layout(state, heading, &format!("apps:{org}")).await,
        heading: heading.to_owned(),
        subject: format!("{} · client id {}", client.name, client.id),
        label: format!("The secret of {}", client.name),
        secret: secret.to_owned(),
        extra: None,
        revealable: false,
        back: format!("{}/{}", base(org), client.id),
    };
    Ok(render_secret(&page))
}

/// `POST /orgs/{org}/apps`.
pub async fn post_create(
    State(state): State<AppState>,
    console: Console,
    PagePath(org): PagePath<String>,
    CheckedForm(form): CheckedForm<AppForm>,
) -> PageResult {
    let mut grant_types = Vec::new();
    if form.grant_client_credentials.is_some() {
        grant_types.push("client_credentials".to_owned());
    }
    if form.grant_authorization_code.is_some() {
        grant_types.push("authorization_code".to_owned());
        grant_types.push("refresh_token".to_owned());
    }
    let spec = ClientSpec {
        name: form.name.clone(),
        grant_types,
        redirect_uris: lines(&form.redirect_uris),
        scopes: words(&form.scopes),
        confidential: form.public.is_none(),
        can_introspect: form.introspect.is_some(),
    };
    let created = state
        .service
        .create_client_as_admin(&console.caller(), &console.session.user, &org, spec)
        .await;
    match created {
        Ok(created) => match &created.secret {
            Some((_, secret)) => {
                client_secret_page(&state, &console, &org, &created.client, secret.expose()).await
            }
            None => Ok(redirect(&format!(
                "{}/{}?done=app_created",
                base(&org),
                created.client.id
            ))),
        },
        Err(e) => {
            let (status, text) = failure(&e);
            let view = AppFormView::from(&form);
            list_page(&state, &console, &org, status, view, None, Some(text)).await
        }
    }
}

async fn app_page(
    state: &AppState,
    console: &Console,
    org: &str,
    id: &str,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> PageResult {
    let (org_record, client) = state
        .service
        .org_client(&console.session.user, org, id)
        .await?;
    let secrets = state.service.client_secrets(&client.id).await?;
    let mut layout = console
        .layout(state, &client.name, &format!("apps:{}", org_record.id))
        .await;
    layout.notice = notice;
    layout.error = error;
    let page = AppPage {
        layout,
        app: AppRow::new(&client, &secrets),
        secrets: secrets
            .iter()
            .filter(|s| s.revoked_at.is_none())
            .map(|s| SecretRow {
                id: s.id.clone(),
                hint: s.hint.clone(),
                created: when(s.created_at),
                last_used: last_used(s),
            })
            .collect(),
        base: format!("{}/{}", base(org), client.id),
        token_endpoint: token_endpoint(state),
        curl: curl_line(state, &client),
    };
    Ok(render(status, &page))
}

fn token_endpoint(state: &AppState) -> String {
    format!("{}/oauth2/token", state.service.settings().public_url)
}

fn last_used(secret: &ClientSecretRecord) -> String {
    secret.last_used_at.map_or_else(
        || "never used".to_owned(),
        |t| format!("last used {}", when(t)),
    )
}

/// `curl` getting a token with the client-credentials grant, for a confidential app that
/// has it; `$CLIENT_SECRET` stands for the secret, which only its copy-once page showed.
fn curl_line(state: &AppState, client: &OAuthClient) -> Option<String> {
    if !client.is_confidential || !client.grant_types.iter().any(|g| g == "client_credentials") {
        return None;
    }
    let scope = if client.scopes.is_empty() {
        String::new()
    } else {
        format!(" -d 'scope={}'", client.scopes.join(" "))
    };
    Some(format!(
        "curl -s -u '{}:'\"$CLIENT_SECRET\" -d grant_type=client_credentials{scope} {}",
        client.id,
        token_endpoint(state)
    ))
}

/// `GET /orgs/{org}/apps/{id}/secrets/{secret}/revoke`: the confirmation, with the secret's
/// last use, and a warning when it is the app's only one.
pub async fn get_remove_secret(
    State(state): State<AppState>,
    console: Console,
    PagePath((org, id, secret)): PagePath<(String, String, String)>,
) -> PageResult {
    let (org_record, client) = state
        .service
        .org_client(&console.session.user, &org, &id)
        .await?;
    let secrets = state.service.client_secrets(&client.id).await?;
    let active: Vec<&ClientSecretRecord> =
        secrets.iter().filter(|s| s.revoked_at.is_none()).collect();
    let found = active
        .iter()
        .find(|s| s.id == secret)
        .ok_or_else(|| ServiceError::not_found("secret"))?;
    let page = RemoveSecretPage {
        layout: console
            .layout(
                &state,
                &format!("Remove a secret of {}", client.name),
                &format!("apps:{}", org_record.id),
            )
            .await,
        app_name: client.name.clone(),
        hint: found.hint.clone(),
        last_used: last_used(found),
        only: active.len() == 1,
        action: format!("{}/{}/secrets/{secret}/revoke", base(&org), client.id),
        back: format!("{}/{}", base(&org), client.id),
    };
    Ok(render(StatusCode::OK, &page))
}

/// The app's page again, with the refusal of an action on it.
async fn app_refused(
    state: &AppState,
    console: &Console,
    org: &str,
    id: &str,
    error: &ServiceError,
) -> PageResult {
    let (status, text) = failure(error);
    app_page(state, console, org, id, status, None, Some(text)).await
}

/// `GET /orgs/{org}/apps/{id}`.
pub async fn get_app(
    State(state): State<AppState>,
    console: Console,
    PagePath((org, id)): PagePath<(String, String)>,
    PageQuery(done): PageQuery<Done>,
) -> PageResult {
    let notice = notice_for(done.done.as_deref());
    app_page(&state, &console, &org, &id, StatusCode::OK, notice, None).await
}

#[derive(serde::Deserialize)]
pub struct EditForm {
    #[serde(default)]
    redirect_uris: String,
    #[serde(default)]
    scopes: String,
}

/// `POST /orgs/{org}/apps/{id}`: redirect URIs and scopes.
pub async fn post_edit(
    State(state): State<AppState>,
    console: Console,
    PagePath((org, id)): PagePath<(String, String)>,
    CheckedForm(form): CheckedForm<EditForm>,
) -> PageResult {
    let change = ClientSpecChange {
        redirect_uris: Some(lines(&form.redirect_uris)),
        scopes: Some(words(&form.scopes)),
        ..ClientSpecChange::default()
    };
    let updated = state
        .service
        .update_client(&console.caller(), &console.session.user, &org, &id, change)
        .await;
    match updated {
        Ok(_) => Ok(redirect(&format!("{}/{id}?done=saved", base(&org)))),
        Err(e) => app_refused(&state, &console, &org, &id, &e).await,
    }
}

/// `POST /orgs/{org}/apps/{id}/secrets`: a new secret, shown once.
pub async fn post_add_secret(
    State(state): State<AppState>,
    console: Console,
    PagePath((org, id)): PagePath<(String, String)>,
    CheckedForm(_): CheckedForm<Empty>,
) -> PageResult {
    let added = state
        .service
        .add_client_secret(&console.caller(), &console.session.user, &org, &id)
        .await;
    match added {
        Ok((_, secret)) => {
            let (_, client) = state
                .service
                .org_client(&console.session.user, &org, &id)
                .await?;
            client_secret_page(&state, &console, &org, &client, secret.expose()).await
        }
        Err(e) => app_refused(&state, &console, &org, &id, &e).await,
    }
}

/// `POST /orgs/{org}/apps/{id}/secrets/{secret}/revoke`.
pub async fn post_remove_secret(
    State(state): State<AppState>,
    console: Console,
    PagePath((org, id, secret)): PagePath<(String, String, String)>,
    CheckedForm(_): CheckedForm<Empty>,
) -> PageResult {
    let removed = state
        .service
        .delete_client_secret(&console.caller(), &console.session.user, &org, &id, &secret)
        .await;
    match removed {
        Ok(_) => Ok(redirect(&format!(
            "{}/{id}?done=secret_removed",
            base(&org)
        ))),
        Err(e) => app_refused(&state, &console, &org, &id, &e).await,
    }
}

#[derive(serde::Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    confirm: String,
}

/// `POST /orgs/{org}/apps/{id}/delete`: only with the app's name typed.
pub async fn post_delete(
    State(state): State<AppState>,
    console: Console,
    PagePath((org, id)): PagePath<(String, String)>,
    CheckedForm(form): CheckedForm<DeleteForm>,
) -> PageResult {
    let (_, client) = state
        .service
        .org_client(&console.session.user, &org, &id)
        .await?;
    if form.confirm.trim() != client.name {
        let text = "Type the app's name exactly to delete it.".to_owned();
        return app_page(
            &state,
            &console,
            &org,
            &id,
            StatusCode::BAD_REQUEST,
            None,
            Some(text),
        )
        .await;
    }
    let deleted = state
        .service
        .delete_client(&console.caller(), &console.session.user, &org, &id)
        .await;
    match deleted {
        Ok(()) => Ok(redirect(&format!("{}?done=app_deleted", base(&org)))),
        Err(e) => app_refused(&state, &console, &org, &id, &e).await,
    }
}
