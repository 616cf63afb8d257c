//! The web console (SPEC 5): server-rendered pages for people, askama templates, no JavaScript
//! framework. Each page calls the same service functions as the API, so the console can do
//! nothing the API would refuse.
//!
//! Every page is answered with a strict CSP (`frame-ancestors 'none'`, only our own script and
//! stylesheet), `no-store` and `Referrer-Policy: same-origin` (`no-referrer` on pages that show
//! a secret); every form carries the session's CSRF token and a POST whose `Origin` is another
//! site is refused. Errors are shown on the page they came from,
//! with the service's sentence (which never holds a secret).

pub mod account;
pub mod activity;
pub mod apps;
pub mod auth;
pub mod cancel;
pub mod credentials;
pub mod fallback;
pub mod frame;
pub mod members;
pub mod org_tokens;
pub mod password_reset;
pub mod sso;

// The pages' frame and extractors, for the console's pages below.
pub(crate) use crate::extract::page::{CheckedForm, Console, Empty, PageQuery};
pub(crate) use crate::pages::{
    Layout, MessagePage, PageResult, failure, notice_for, redirect, render, render_secret,
    sentence, unavailable, when, when_or,
};
