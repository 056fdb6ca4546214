//! The admin operations: quarantined media is served to no one until released; deleting
//! media removes its row, its bytes from the uploader's usage, and its blob once no other
//! media names the same bytes.

use trellis_core::ErrorCode;
use trellis_proto::media::{
    AdminDeleteMediaRequest, AdminListMediaRequest, AdminMediaPage, AdminMediaRef, AdminMediaSelection,
    AdminQuarantineRequest, admin_media_selection::Which,
};

use crate::support::{Fixture, MB, SERVER, Via, chunked, expect_err, meta, pseudo_random};

const ADMIN: &str = "@root:media.test";

fn one(media_id: &str) -> Option<AdminMediaSelection> {
    let r = AdminMediaRef { server_name: SERVER.into(), media_id: media_id.into() };
    Some(AdminMediaSelection { which: Some(Which::One(r)) })
}

async fn quarantine_hides_media(via: Via) {
    let fx = Fixture::new(via, MB).await;
    let id = fx.upload(meta("text/plain", None, None), chunked(b"hello", &[5])).await.unwrap();
    let set = |on| AdminQuarantineRequest { admin: ADMIN.into(), selection: one(&id), quarantine: on };
    assert_eq!(fx.svc().admin_quarantine(set(true)).await.unwrap().count, 1);
    expect_err(fx.download(SERVER, &id).await, ErrorCode::NotFound, 404);
    fx.svc().admin_quarantine(set(false)).await.unwrap();
    fx.download(SERVER, &id).await.unwrap();

    let unknown = AdminQuarantineRequest { admin: ADMIN.into(), selection: one("nosuch"), quarantine: true };
    expect_err(fx.svc().admin_quarantine(unknown).await, ErrorCode::NotFound, 404);
    let remote = AdminMediaRef { server_name: "other.test".into(), media_id: id.clone() };
    let remote = Some(AdminMediaSelection { which: Some(Which::One(remote)) });
    let req = AdminQuarantineRequest { admin: ADMIN.into(), selection: remote, quarantine: true };
    expect_err(fx.svc().admin_quarantine(req).await, ErrorCode::InvalidParam, 400);
}

async fn deletion_frees_blobs_and_usage(via: Via) {
    let fx = Fixture::new(via, MB).await;
    let data = pseudo_random(10_000, 3);
    let a = fx.upload(meta("text/plain", None, None), chunked(&data, &[4_000])).await.unwrap();
    let b = fx.upload(meta("text/plain", None, None), chunked(&data, &[4_000])).await.unwrap();
    let usage = "SELECT bytes FROM media_usage WHERE user_id = '@alice:media.test'";
    assert_eq!(fx.count(usage).await, 20_000);

    let del = |id: &str| AdminDeleteMediaRequest { admin: ADMIN.into(), selection: one(id) };
    assert_eq!(fx.svc().admin_delete_media(del(&a)).await.unwrap().media_ids, vec![a.clone()]);
    assert_eq!(fx.blob_files(), vec![fx.blob_path(&data)], "b still names the bytes");
    assert_eq!(fx.count(usage).await, 10_000);
    expect_err(fx.svc().admin_delete_media(del(&a)).await, ErrorCode::NotFound, 404);

    fx.svc().admin_delete_media(del(&b)).await.unwrap();
    assert!(fx.blob_files().is_empty(), "the last media naming the blob took it along");
    assert_eq!((fx.rows().await, fx.count(usage).await), (0, 0));

    let page = AdminMediaPage { user_id: "@alice:media.test".into(), limit: 5000, ..AdminMediaPage::default() };
    let req = AdminListMediaRequest { page: Some(page) };
    expect_err(fx.svc().admin_list_media(req).await, ErrorCode::InvalidParam, 400);
}

trellis_testkit::contract!(setup = trellis_testkit::contract::bare; quarantine_hides_media, deletion_frees_blobs_and_usage);
