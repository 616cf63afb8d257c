//! A forgotten password (SPEC 9): `/forgot-password` asks for the address and mails a link;
//! the link opens `/reset-password?code=…`, where a new password is chosen.
//!
//! Opening the link changes nothing (mail scanners open links); the form does. The code is the
//! credential, single-use and valid for 30 minutes, so neither form needs a session or a CSRF
//! token: whoever could forge the reset already holds the code, and a forged request for a
//! mail only sends the owner a link (limited per address and per account). The page that
//! carries the code in its URL sends no `Referer`.

use askama::Template;
use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use secrecy::SecretString;

use super::{Layout, MessagePage, failure, render, render_secret};
use crate::AppState;
use crate::extract::ClientIp;

#[derive(Template)]
#[template(path = "forgot.html")]
pub struct ForgotPage {
    pub layout: Layout,
}

#[derive(Template)]
#[template(path = "reset.html")]
pub struct ResetPage {
    pub layout: Layout,
    pub code: String,
}

fn message(status: StatusCode, heading: &str, text: String, back: Option<&str>) -> Response {
    render(
        status,
        &MessagePage {
            layout: Layout::anonymous(heading, String::new()),
            heading: heading.to_owned(),
            text,
            back: back.map(str::to_owned),
        },
    )
}

/// `GET /forgot-password`.
pub async fn get_forgot() -> Response {
    render(
        StatusCode::OK,
        &ForgotPage {
            layout: Layout::anonymous("Forgot your password?", String::new()),
        },
    )
}

#[derive(serde::Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    email: String,
}

/// `POST /forgot-password`: the same answer whether the address is known or not.
pub async fn post_forgot(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    form: Result<Form<EmailForm>, FormRejection>,
) -> Response {
    let Ok(Form(EmailForm { email })) = form else {
        return message(
            StatusCode::BAD_REQUEST,
            "Cannot continue",
            "The form could not be read.".to_owned(),
            Some("/forgot-password"),
        );
    };
    match state.service.request_password_reset(ip, &email).await {
        Ok(()) => message(
            StatusCode::OK,
            "Check your mail",
            "If an account has this address, a mail with a link to choose a new password is on its way. The link works once, for 30 minutes.".to_owned(),
            Some("/login"),
        ),
        Err(e) => {
            let (status, text) = failure(&e);
            message(status, "Cannot send a link", text, Some("/forgot-password"))
        }
    }
}

#[derive(serde::Deserialize)]
pub struct CodeParam {
    #[serde(default)]
    code: String,
}

/// `GET /reset-password?code=…`: the form (the code is checked when it is used).
pub async fn get_reset(query: Result<Query<CodeParam>, QueryRejection>) -> Response {
    let code = query.map(|Query(q)| q.code).unwrap_or_default();
    render_secret(&ResetPage {
        layout: Layout::anonymous("Choose a new password", String::new()),
        code,
    })
}

#[derive(serde::Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    code: String,
    password: SecretString,
}

/// `POST /reset-password`: the new password, once.
pub async fn post_reset(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    form: Result<Form<ResetForm>, FormRejection>,
) -> Response {
    let Ok(Form(ResetForm { code, password })) = form else {
        return message(
            StatusCode::BAD_REQUEST,
            "Cannot continue",
            "The form could not be read.".to_owned(),
            None,
        );
    };
    // A password the rules refuse leaves the code unused: the form again, with why (the
    // service checks the same rules again).
    if let Err(e) = latchkey_service::crypto::check_password_rules(&password) {
        let mut layout = Layout::anonymous("Choose a new password", String::new());
        layout.error = Some(failure(&e).1);
        let mut response = render_secret(&ResetPage { layout, code });
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    }
    match state
        .service
        .complete_password_reset(ip, &code, &password)
        .await
    {
        Ok(()) => message(
            StatusCode::OK,
            "Password changed",
            "Your password is changed and every session of your account has ended. Sign in with the new password.".to_owned(),
            Some("/login"),
        ),
        Err(e) => {
            let (status, text) = failure(&e);
            message(status, "This link cannot be used", text, Some("/forgot-password"))
        }
    }
}
