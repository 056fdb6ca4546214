//! Admin API handlers for event reports (`/_synapse/admin/v1/event_reports`): the reports
//! users made of events, listed (newest first by default), shown with the event, deleted.
//! The rooms service keeps them.

use axum::Router;
use trellis_core::Error;
use trellis_proto::rooms::{AdminEventReportEntry, AdminEventReportRequest, AdminListEventReportsRequest};

use super::{
    DEFAULT_LIMIT, ServerAdmin,
    api_rooms::{self as api, EventReport},
    backwards, next_from,
};
use crate::{AppState, error::ApiResult, extract::Ruma, router::RumaRoutes};

pub fn routes() -> Router<AppState> {
    Router::new().ruma(list_route).ruma(get_route).ruma(delete_route)
}

fn report(r: &AdminEventReportEntry) -> EventReport {
    EventReport {
        id: r.id,
        received_ts: r.received_ts,
        room_id: r.room_id.clone(),
        name: r.name.clone(),
        event_id: r.event_id.clone(),
        user_id: r.user_id.clone(),
        reason: r.reason.clone(),
        score: None,
        sender: r.sender.clone(),
        canonical_alias: r.canonical_alias.clone(),
    }
}

/// A report's ID from the path: a positive integer (`M_INVALID_PARAM` otherwise, as Synapse).
fn report_id(id: &str) -> ApiResult<AdminEventReportRequest> {
    match id.parse::<i64>() {
        Ok(id) if id >= 0 => Ok(AdminEventReportRequest { id }),
        _ => {
            Err(Error::invalid_param("The report_id parameter must be a string representing a positive integer.")
                .into())
        }
    }
}

/// # `GET /_synapse/admin/v1/event_reports`
async fn list_route(
    s: AppState,
    req: Ruma<api::list_event_reports::Request, ServerAdmin>,
) -> ApiResult<api::list_event_reports::Response> {
    let q = req.body;
    let (from, limit) = (q.from.unwrap_or(0), q.limit.unwrap_or(DEFAULT_LIMIT));
    let list = AdminListEventReportsRequest {
        from,
        limit,
        backwards: backwards(q.dir.as_deref(), true)?,
        room_id: q.room_id,
        user_id: q.user_id,
    };
    let found = s.services.rooms.admin_list_event_reports(list).await?;
    let next_token = next_from(from, limit, found.total);
    let event_reports = found.reports.iter().map(report).collect();
    Ok(api::list_event_reports::Response { event_reports, next_token, total: found.total })
}

/// # `GET /_synapse/admin/v1/event_reports/{reportId}`
async fn get_route(
    s: AppState,
    req: Ruma<api::event_report::Request, ServerAdmin>,
) -> ApiResult<api::event_report::Response> {
    let found = s.services.rooms.admin_event_report(report_id(&req.body.report_id)?).await?;
    let event_json = found.event_json.clone().map(ruma::serde::Raw::from_json_string).transpose()?;
    Ok(api::event_report::Response { report: report(&found), event_json })
}

/// # `DELETE /_synapse/admin/v1/event_reports/{reportId}`
async fn delete_route(
    s: AppState,
    req: Ruma<api::delete_event_report::Request, ServerAdmin>,
) -> ApiResult<api::delete_event_report::Response> {
    s.services.rooms.admin_delete_event_report(report_id(&req.body.report_id)?).await?;
    Ok(api::delete_event_report::Response {})
}
