//! The cancel link of a token with an activation delay (SPEC 2.4): the creation mail carries
//! `/cancel?code=…`; the page names the token and one button cancels it before it ever works.
//!
//! Opening the link changes nothing (mail scanners open links); the button does. The code in
//! the link is the credential, single-use and valid until the token becomes active, so the form
//! needs no session and no CSRF token: whoever could forge the post already holds the code.
//! The page that carries the code in its URL sends no `Referer`.

use askama::Template;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use latchkey_service::{Caller, ServiceError};

use super::{Layout, failure, render, render_secret, when};
use crate::AppState;
use crate::extract::ClientIp;

#[derive(Template)]
#[template(path = "cancel.html")]
pub struct CancelPage {
    pub layout: Layout,
    pub heading: String,
    pub text: String,
    pub code: Option<String>,
}

#[derive(serde::Deserialize)]
pub struct CodeParam {
    #[serde(default)]
    code: String,
}

fn gone(error: &ServiceError) -> Response {
    let (status, text) = failure(error);
    let page = CancelPage {
        layout: Layout::anonymous("Cancel a token", String::new()),
        heading: "This link cannot be used".to_owned(),
        text,
        code: None,
    };
    render(status, &page)
}

/// `GET /cancel?code=…`: names the token and offers the button.
pub async fn get_cancel(
    State(state): State<AppState>,
    query: Result<Query<CodeParam>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let code = query.map(|Query(q)| q.code).unwrap_or_default();
    match state.service.cancel_link_token(&code).await {
        Ok(token) => render_secret(&CancelPage {
            layout: Layout::anonymous("Cancel a token", String::new()),
            heading: format!("Cancel “{}”?", token.name),
            text: format!(
                "This {} token has not started working yet: it would at {}. Cancelling revokes it for good.",
                token.token_type,
                when(token.active_from)
            ),
            code: Some(code),
        }),
        Err(e) => gone(&e),
    }
}

/// `POST /cancel`: cancels the token (once).
pub async fn post_cancel(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    form: Result<Form<CodeParam>, FormRejection>,
) -> Response {
    let Ok(Form(CodeParam { code })) = form else {
        let page = CancelPage {
            layout: Layout::anonymous("Cancel a token", String::new()),
            heading: "Cannot continue".to_owned(),
            text: "The form could not be read.".to_owned(),
            code: None,
        };
        return render(StatusCode::BAD_REQUEST, &page);
    };
    match state
        .service
        .use_cancel_link(&code, &Caller::anonymous(Some(ip)))
        .await
    {
        Ok(token) => render(
            StatusCode::OK,
            &CancelPage {
                layout: Layout::anonymous("Token cancelled", String::new()),
                heading: "Token cancelled".to_owned(),
                text: format!("“{}” is revoked and will never work.", token.name),
                code: None,
            },
        ),
        Err(e) => gone(&e),
    }
}
