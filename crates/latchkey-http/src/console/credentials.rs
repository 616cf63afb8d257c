//! "API credentials": the person's own tokens. Generating, revoking and revealing ask for the
//! password; the secret is shown once, on a page that is never cached.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use latchkey_core::policy::OwnerKind;
use latchkey_core::{Grace, Timestamp, TokenStatus};
use latchkey_service::ServiceError;
use latchkey_service::tokens::{CreatePersonalToken, Created};
use latchkey_store::TokenRecord;
use secrecy::SecretString;

use super::{
    CheckedForm, Console, Layout, PageQuery, failure, notice_for, redirect, render, render_secret,
    when, when_or,
};
use crate::AppState;
use crate::extract::page::PagePath;

/// A token as the tables show it.
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub token_type: String,
    pub hint: String,
    pub status: &'static str,
    pub status_note: Option<String>,
    pub expires: String,
    pub last_used: String,
    pub live: bool,
    pub revealable: bool,
    /// How it is linked to a rotation: "Replaces lkp_…Ab3d", "Being replaced: ends …".
    pub rotation: Option<String>,
    /// Rotate is offered: live, and not already being replaced (the service refuses that).
    pub rotatable: bool,
    /// Why not, for a live token that cannot be rotated.
    pub not_rotatable: Option<&'static str>,
    /// The addresses it may be used from ("10.0.0.0/8, 192.0.2.7/32"); none: anywhere.
    pub allowed_from: Option<String>,
}

impl TokenRow {
    /// The rows of a list of tokens, the live ones first (newest first, as given) and the
    /// ended ones apart, with each rotation's two tokens linked.
    pub fn split(tokens: &[TokenRecord], now: Timestamp) -> (Vec<TokenRow>, Vec<TokenRow>) {
        let mut rows: Vec<TokenRow> = tokens.iter().map(|t| TokenRow::new(t, now)).collect();
        for (i, t) in tokens.iter().enumerate() {
            let Some(old_id) = &t.rotated_from else {
                continue;
            };
            let Some(j) = tokens.iter().position(|o| &o.id == old_id) else {
                continue;
            };
            let old = &tokens[j];
            rows[i].rotation = Some(format!("Replaces {} (“{}”)", old.hint, old.name));
            if rows[j].live && rows[i].live {
                let ends =
                    if t.ends_on_first_use.as_ref() == Some(old_id) && t.last_used_at.is_none() {
                        format!(
                            "when {} is first used (at the latest {})",
                            t.hint,
                            when_or(old.expires_at, "never")
                        )
                    } else {
                        when_or(old.expires_at, "never")
                    };
                rows[j].rotation = Some(format!("Being replaced by {}: ends {ends}", t.hint));
                rows[j].rotatable = false;
                rows[j].not_rotatable = Some("Already being replaced.");
            }
        }
        rows.into_iter().partition(|r| r.live)
    }

    pub fn new(t: &TokenRecord, now: Timestamp) -> Self {
        let status = t.status(now);
        let status_note = match status {
            TokenStatus::Pending => Some(format!("active from {}", when(t.active_from))),
            TokenStatus::Revoked => t.revoked_at.map(|at| format!("since {}", when(at))),
            _ => None,
        };
        let last_used = match (&t.last_used_at, &t.last_used_ip) {
            (Some(at), Some(ip)) => format!("{} from {ip}", when(*at)),
            (Some(at), None) => when(*at),
            _ => "never".to_owned(),
        };
        Self {
            id: t.id.to_string(),
            name: t.name.clone(),
            token_type: t.token_type.clone(),
            hint: t.hint.clone(),
            status: status.as_str(),
            status_note,
            expires: when_or(t.expires_at, "never"),
            last_used,
            live: matches!(status, TokenStatus::Pending | TokenStatus::Active),
            revealable: t.is_revealable,
            rotation: None,
            allowed_from: (!t.allowed_ips.is_empty()).then(|| t.allowed_ips.join(", ")),
            rotatable: matches!(status, TokenStatus::Pending | TokenStatus::Active),
            not_rotatable: None,
        }
    }
}

/// A type in the creation form; disabled (with the reason) when it cannot be chosen.
pub struct TypeOption {
    pub name: String,
    pub disabled: Option<String>,
}

/// Why a type's creation would be refused for its live-token limit, said before anyone fills
/// the form ("1 of 1 live: revoke or rotate one to make another").
pub fn at_limit(max_active: u32, live: &[TokenRow], token_type: &str) -> Option<String> {
    let n = live.iter().filter(|r| r.token_type == token_type).count();
    (u32::try_from(n).unwrap_or(u32::MAX) >= max_active)
        .then(|| format!("{n} of {max_active} live: revoke or rotate one to make another"))
}

/// What the creation form shows: empty, pre-filled from a link (expiry notices), or what the
/// person typed before an error.
#[derive(Default, serde::Deserialize)]
pub struct Prefill {
    #[serde(default)]
    pub name: String,
    #[serde(default, alias = "type")]
    pub token_type: String,
    #[serde(default)]
    pub expires_in_days: String,
    #[serde(default)]
    pub done: Option<String>,
}

#[derive(Template)]
#[template(path = "credentials.html")]
pub struct CredentialsPage {
    pub layout: Layout,
    pub tokens: Vec<TokenRow>,
    /// Revoked and expired, shown apart.
    pub ended: Vec<TokenRow>,
    pub types: Vec<TypeOption>,
    pub form: Prefill,
    pub org: Option<String>,
    pub base: String,
}

#[derive(Template)]
#[template(path = "secret.html")]
pub struct SecretPage {
    pub layout: Layout,
    pub heading: String,
    pub subject: String,
    pub label: String,
    pub secret: String,
    pub extra: Option<String>,
    pub revealable: bool,
    pub back: String,
}

/// The copy-once page for a token secret.
pub async fn token_secret_page(
    state: &AppState,
    console: &Console,
    heading: &str,
    record: &TokenRecord,
    secret: &str,
    back: &str,
    current: &str,
) -> Response {
    let page = SecretPage {
        layout: console.layout(state, heading, current).await,
        heading: heading.to_owned(),
        subject: format!("{} ({} token)", record.name, record.token_type),
        label: format!("The token {}", record.name),
        secret: secret.to_owned(),
        extra: (record.active_from > state.service.now())
            .then(|| format!("It starts working at {}.", when(record.active_from))),
        revealable: record.is_revealable,
        back: back.to_owned(),
    };
    render_secret(&page)
}

async fn page(
    state: &AppState,
    console: &Console,
    status: StatusCode,
    form: Prefill,
    error: Option<String>,
) -> Response {
    let mut layout = console
        .layout(state, "API credentials", "credentials")
        .await;
    layout.notice = notice_for(form.done.as_deref());
    let listed = state
        .service
        .list_personal_tokens(&console.session.user)
        .await;
    let (status, tokens) = match listed {
        Ok(tokens) => {
            layout.error = error;
            (status, tokens)
        }
        Err(e) => {
            let (status, text) = failure(&e);
            layout.error = Some(text);
            (status, Vec::new())
        }
    };
    let now = state.service.now();
    let (live, ended) = TokenRow::split(&tokens, now);
    let page = CredentialsPage {
        layout,
        types: state
            .service
            .types()
            .iter()
            .filter(|t| t.owner == OwnerKind::User)
            .map(|t| TypeOption {
                name: t.name.clone(),
                disabled: at_limit(t.max_active, &live, &t.name),
            })
            .collect(),
        tokens: live,
        ended,
        form,
        org: None,
        base: "/credentials/tokens".to_owned(),
    };
    render(status, &page)
}

/// The page again, with the refusal of an action on one of its tokens.
async fn refused(state: &AppState, console: &Console, error: &ServiceError) -> Response {
    let (status, text) = failure(error);
    page(state, console, status, Prefill::default(), Some(text)).await
}

/// `GET /credentials` and `GET /credentials/new?name=…&type=…` (the link of an expiry notice
/// opens the form pre-filled).
pub async fn get_credentials(
    State(state): State<AppState>,
    console: Console,
    PageQuery(prefill): PageQuery<Prefill>,
) -> Response {
    page(&state, &console, StatusCode::OK, prefill, None).await
}

#[derive(serde::Deserialize)]
pub struct CreateForm {
    name: String,
    #[serde(default)]
    token_type: String,
    #[serde(default)]
    expires_in_days: String,
    /// Left out by someone who confirms at the single-sign-on provider.
    #[serde(default)]
    password: String,
}

/// An optional whole number of days from a form field.
pub fn days(text: &str) -> Result<Option<u32>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<u32>()
        .map(Some)
        .map_err(|_| "The expiry is a whole number of days.".to_owned())
}

/// `POST /credentials/tokens`: generates the token and shows it once.
pub async fn post_create(
    State(state): State<AppState>,
    console: Console,
    CheckedForm(form): CheckedForm<CreateForm>,
) -> Response {
    let prefill = Prefill {
        name: form.name.clone(),
        token_type: form.token_type.clone(),
        expires_in_days: form.expires_in_days.clone(),
        done: None,
    };
    let expires_in_days = match days(&form.expires_in_days) {
        Ok(d) => d,
        Err(e) => return page(&state, &console, StatusCode::BAD_REQUEST, prefill, Some(e)).await,
    };
    let request = CreatePersonalToken {
        name: form.name,
        token_type: Some(form.token_type).filter(|t| !t.is_empty()),
        expires_in_days,
        allowed_ips: None,
        password: SecretString::from(form.password),
    };
    match state
        .service
        .create_personal_token(&console.caller(), &console.session.user, request, None)
        .await
    {
        Ok(Created::New(created)) => {
            token_secret_page(
                &state,
                &console,
                "Your new token",
                &created.record,
                created.secret.expose(),
                "/credentials",
                "credentials",
            )
            .await
        }
        Ok(Created::Replayed(_)) => redirect("/credentials"),
        Err(e) => {
            let (status, text) = failure(&e);
            page(&state, &console, status, prefill, Some(text)).await
        }
    }
}

#[derive(serde::Deserialize)]
pub struct RotateForm {
    #[serde(default)]
    pub grace: String,
    /// Asked on personal tokens only (SPEC 2.3); organisation pages do not send it.
    #[serde(default)]
    pub password: String,
}

/// Reads the grace choice of a rotate form (`0s` when absent).
pub fn grace(text: &str) -> Result<Grace, String> {
    if text.is_empty() {
        return Ok(Grace::default());
    }
    text.parse().map_err(|_| {
        "The grace period is a duration of at most 7 days, or until first use.".to_owned()
    })
}

/// `POST /credentials/tokens/{id}/rotate`.
pub async fn post_rotate(
    State(state): State<AppState>,
    console: Console,
    PagePath(id): PagePath<String>,
    CheckedForm(form): CheckedForm<RotateForm>,
) -> Response {
    let grace = match grace(&form.grace) {
        Ok(g) => g,
        Err(e) => {
            return page(
                &state,
                &console,
                StatusCode::BAD_REQUEST,
                Prefill::default(),
                Some(e),
            )
            .await;
        }
    };
    match state
        .service
        .rotate_personal_token(
            &console.caller(),
            &console.session.user,
            &id,
            grace,
            &SecretString::from(form.password),
        )
        .await
    {
        Ok(created) => {
            token_secret_page(
                &state,
                &console,
                "The replacement token",
                &created.record,
                created.secret.expose(),
                "/credentials",
                "credentials",
            )
            .await
        }
        Err(e) => refused(&state, &console, &e).await,
    }
}

#[derive(serde::Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    pub password: String,
}

/// `POST /credentials/tokens/{id}/revoke`: behind the password.
pub async fn post_revoke(
    State(state): State<AppState>,
    console: Console,
    PagePath(id): PagePath<String>,
    CheckedForm(form): CheckedForm<PasswordForm>,
) -> Response {
    let password = SecretString::from(form.password);
    match state
        .service
        .revoke_personal_token(&console.caller(), &console.session.user, &id, &password)
        .await
    {
        Ok(_) => redirect("/credentials?done=revoked"),
        Err(e) => refused(&state, &console, &e).await,
    }
}

/// `POST /credentials/tokens/{id}/reveal`: behind the password, for revealable types only.
pub async fn post_reveal(
    State(state): State<AppState>,
    console: Console,
    PagePath(id): PagePath<String>,
    CheckedForm(form): CheckedForm<PasswordForm>,
) -> Response {
    let password = SecretString::from(form.password);
    let user = &console.session.user;
    let revealed = state
        .service
        .reveal_personal_token(&console.caller(), user, &id, &password)
        .await;
    let record = state.service.personal_token(user, &id).await;
    match (revealed, record) {
        (Ok(secret), Ok(record)) => {
            token_secret_page(
                &state,
                &console,
                "Your token",
                &record,
                secret.expose(),
                "/credentials",
                "credentials",
            )
            .await
        }
        (Err(e), _) | (_, Err(e)) => refused(&state, &console, &e).await,
    }
}
