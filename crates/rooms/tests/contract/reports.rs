//! Reports are stored for the admins, one row each, with what they name.

use trellis_core::ErrorCode;
use trellis_proto::rooms::*;

use crate::common::*;

/// A stored report: reporter, room, event, user, reason.
type Stored = (String, Option<String>, Option<String>, Option<String>, Option<String>);

pub async fn reports_are_stored(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    let event = send(&env, message(ALICE, &room, "x", None)).await.unwrap();
    let report = ReportEventRequest {
        reporter: BOB.into(),
        room_id: room.clone(),
        event_id: event.clone(),
        reason: Some("bad".into()),
    };
    env.svc.report_event(report.clone()).await.unwrap();
    let outsider = ReportEventRequest { reporter: CAROL.into(), ..report };
    assert_eq!(code(env.svc.report_event(outsider).await.unwrap_err()), ErrorCode::NotFound);
    env.svc
        .report_room(ReportRoomRequest { reporter: CAROL.into(), room_id: room.clone(), reason: String::new() })
        .await
        .unwrap();
    let err =
        env.svc.report_user(ReportUserRequest { reporter: BOB.into(), user_id: EVE.into(), reason: "r".into() }).await;
    assert_eq!(code(err.unwrap_err()), ErrorCode::NotFound, "Eve has no account here");

    let client = env.db.pool(1).get().await.unwrap();
    let rows = client
        .query("SELECT reporter, room_id, event_id, target_user_id, reason FROM content_reports ORDER BY id", &[])
        .await
        .unwrap();
    let rows: Vec<Stored> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect();
    assert_eq!(
        rows,
        vec![
            (BOB.into(), Some(room.clone()), Some(event), None, Some("bad".into())),
            (CAROL.into(), Some(room), None, None, Some(String::new())),
        ]
    );
}
