//! The OAuth 2.0 API's HTTP side (spec 1.15+, `docs/oauth.md`): server metadata, the
//! machine endpoints of RFC 7591/6749/7009/8628 (`endpoints.rs`) and the server-rendered
//! pages a browser sees — login, registration, consent, device link, account (`pages.rs`).
//! Everything it decides is the auth service's; this module parses, renders and sets cookies.

mod account;
mod endpoints;
pub(crate) mod pages;
pub(crate) mod web;

use axum::Router;

use crate::AppState;

/// Where the OAuth endpoints and pages live, under the public base URL.
pub(crate) const PREFIX: &str = "/_trellis/oauth2";
/// The account management page.
pub(crate) const ACCOUNT: &str = "/_trellis/account";

pub fn routes() -> Router<AppState> {
    Router::new().merge(endpoints::routes()).merge(pages::routes())
}
