//! `GET /v1/orgs`: the organisations of the signed-in user, with their role.

use axum::Json;
use axum::extract::State;

use crate::AppState;
use crate::api::views::AccountView;
use crate::error::ApiResult;
use crate::extract::SignedIn;

pub async fn list_orgs(
    State(state): State<AppState>,
    me: SignedIn,
) -> ApiResult<Json<Vec<AccountView>>> {
    let accounts = state.service.list_accounts(&me.session.user.id).await?;
    Ok(Json(accounts.iter().map(AccountView::new).collect()))
}
