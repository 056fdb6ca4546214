//! Rooms for the server's admins: a deletion waited for leaves no row of the room but its
//! block and record; a deletion a stop interrupted is finished by the next service to start.

use std::sync::Arc;

use trellis_core::{ErrorCode, shutdown::Shutdown};
use trellis_proto::rooms::*;
use trellis_rooms::{Rooms, RoomsHandle, RoomsSettings};

use crate::common::*;

async fn count(env: &Env, sql: &str, room: &str) -> i64 {
    env.db.pool(1).get().await.unwrap().query_one(sql, &[&room]).await.unwrap().get(0)
}

pub async fn a_waited_deletion_purges_the_room(env: Env) {
    let room = room_with(&env, "public_chat", &[BOB]).await;
    for i in 0..20 {
        send(&env, message(BOB, &room, &format!("m{i}"), None)).await.unwrap();
    }
    let delete = AdminDeleteRoomRequest {
        admin: ALICE.into(),
        room_id: room.clone(),
        block: true,
        purge: true,
        wait: true,
        ..AdminDeleteRoomRequest::default()
    };
    let done = env.svc.admin_delete_room(delete.clone()).await.unwrap();
    assert_eq!(done.status, "complete");
    let mut kicked = done.kicked_users.clone();
    kicked.sort();
    assert_eq!(kicked, [ALICE, BOB]);
    assert!(done.purged_rows > 20, "{done:?}");
    assert_eq!(count(&env, "SELECT count(*) FROM events WHERE room_id = $1", &room).await, 0);
    assert_eq!(count(&env, "SELECT count(*) FROM memberships WHERE room_id = $1", &room).await, 0);
    let block = env.svc.admin_get_block(AdminRoomRequest { room_id: room.clone() }).await.unwrap();
    assert_eq!((block.block, block.user_id.as_deref()), (true, Some(ALICE)));
    let err = env.svc.admin_room_details(AdminRoomRequest { room_id: room.clone() }).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::NotFound);
    let joined = env.svc.change_membership(member(BOB, &room, MembershipAction::Join, None)).await;
    assert_eq!(code(joined.unwrap_err()), ErrorCode::Forbidden);
    let status = env.svc.admin_delete_status(AdminDeleteStatusRequest { delete_id: None, room_id: Some(room) }).await;
    assert_eq!(status.unwrap().deletions.len(), 1);
}

/// Not through gRPC: the service is stopped and started again on the same database.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_deletion_is_resumed_at_start() {
    let env = local().await;
    let room = room_with(&env, "public_chat", &[BOB]).await;
    for i in 0..30 {
        send(&env, message(BOB, &room, &format!("m{i}"), None)).await.unwrap();
    }
    // Stopped half way through a purge: the members gone, the events not yet.
    let client = env.db.pool(1).get().await.unwrap();
    client.execute("DELETE FROM memberships WHERE room_id = $1", &[&room]).await.unwrap();
    client
        .execute(
            "INSERT INTO room_deletions (delete_id, room_id, requester, status, params, created_ts, updated_ts) \
             VALUES ('interrupted', $1, '@alice:localhost', 'purging', \
               '{\"block\":false,\"purge\":true,\"force_purge\":false,\"new_room_user_id\":null,\"room_name\":null,\"message\":null}', 0, 0)",
            &[&room],
        )
        .await
        .unwrap();
    drop(client);
    let Env { svc, rooms, db } = env;
    drop(svc);
    drop(rooms);

    let settings = RoomsSettings {
        server_name: ruma::ServerName::parse("localhost").unwrap(),
        database: trellis_storage::Target::new(db.url(), None).unwrap(),
        test_commit_jitter: None,
        appservices: Default::default(),
        insecure_identity_server_tls: false,
    };
    let rooms = Rooms::start(db.pool(4), trellis_bus::MemoryBus::new(), settings, Shutdown::never()).await.unwrap();
    let svc: Arc<dyn RoomsService> = Arc::new(RoomsHandle(rooms.clone()));
    let ask = || AdminDeleteStatusRequest { delete_id: Some("interrupted".into()), room_id: None };
    let mut status = svc.admin_delete_status(ask()).await.unwrap().deletions.remove(0);
    for _ in 0..300 {
        if status.status == "complete" || status.status == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        status = svc.admin_delete_status(ask()).await.unwrap().deletions.remove(0);
    }
    assert_eq!(status.status, "complete", "{status:?}");
    let left: i64 = db
        .pool(1)
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM events WHERE room_id = $1", &[&room])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}
