//! Admin operations on local media (Synapse's media admin API): quarantine and release
//! (downloads and thumbnails of quarantined media answer `M_NOT_FOUND`), protection from
//! quarantine (every quarantine passes protected media by), deletion with the
//! thumbnails and the blobs nothing else names, and a user's uploads a page at a time.
//! Every change is logged on `trellis::audit` with the acting admin.

use trellis_core::{Error, Result};
use trellis_proto::media::{
    AdminDeleteMediaRequest, AdminDeletedMedia, AdminListMediaRequest, AdminMediaCount, AdminMediaList, AdminMediaPage,
    AdminMediaRef, AdminMediaSelection, AdminProtectMediaRequest, AdminQuarantineRequest, admin_media_selection::Which,
};

use crate::{db, ids::is_valid_media_id, inner::Inner};

/// Most media one page of a user's list holds.
const MAX_LIMIT: i32 = 1000;

/// What a selection names, once checked.
enum Selected {
    /// Media IDs; `named` when the request named exactly one (unknown: `M_NOT_FOUND`).
    Ids {
        ids: Vec<String>,
        named: bool,
    },
    User(String),
}

fn check_page(page: &AdminMediaPage) -> Result<()> {
    if page.from < 0 {
        return Err(Error::invalid_param("Query parameter from must be a string representing a positive integer."));
    }
    if !(0..=MAX_LIMIT).contains(&page.limit) {
        return Err(Error::invalid_param(format!("limit must be between 0 and {MAX_LIMIT}")));
    }
    Ok(())
}

fn audit<T>(admin: &str, action: &str, target: &str, outcome: &Result<T>) {
    let outcome_name = if outcome.is_ok() { "ok" } else { "refused" };
    tracing::info!(target: "trellis::audit", admin, action, target, outcome = outcome_name, "admin action");
}

impl Inner {
    /// The media ID of a named local media (`M_INVALID_PARAM` for another server's).
    fn local_ref(&self, r: &AdminMediaRef) -> Result<String> {
        if r.server_name != self.settings.server_name {
            return Err(Error::invalid_param("Only local media can be managed here"));
        }
        if !is_valid_media_id(&r.media_id) {
            return Err(Error::not_found("Unknown media ID"));
        }
        Ok(r.media_id.clone())
    }

    async fn selected(&self, selection: Option<AdminMediaSelection>) -> Result<Selected> {
        Ok(match selection.and_then(|s| s.which) {
            Some(Which::One(r)) => Selected::Ids { ids: vec![self.local_ref(&r)?], named: true },
            Some(Which::Media(m)) => {
                let ids = m.media_ids.into_iter().filter(|id| is_valid_media_id(id)).collect();
                Selected::Ids { ids, named: false }
            }
            Some(Which::UserId(user_id)) => Selected::User(user_id),
            Some(Which::Page(page)) => {
                check_page(&page)?;
                let (media, _) = db::admin::user_media(&self.pool, &page).await?;
                Selected::Ids { ids: media.into_iter().map(|m| m.media_id).collect(), named: false }
            }
            None => return Err(Error::invalid_param("no media selected")),
        })
    }

    #[tracing::instrument(skip_all)]
    pub(crate) async fn admin_quarantine(&self, req: AdminQuarantineRequest) -> Result<AdminMediaCount> {
        let action = if req.quarantine { "quarantine_media" } else { "release_media" };
        let target = format!("{:?}", req.selection.as_ref().and_then(|s| s.which.as_ref()));
        let outcome = async {
            let by = req.quarantine.then_some(req.admin.as_str());
            let count = match self.selected(req.selection.clone()).await? {
                Selected::Ids { ids, named } => {
                    let count = db::admin::quarantine_ids(&self.pool, &ids, by).await?;
                    // Nothing changed: unknown, or protected (passed by, as Synapse).
                    if named && count == 0 && !db::admin::exists(&self.pool, &ids[0]).await? {
                        return Err(Error::not_found("Unknown media ID"));
                    }
                    count
                }
                Selected::User(user_id) => db::admin::quarantine_user(&self.pool, &user_id, by).await?,
            };
            Ok(AdminMediaCount { count })
        }
        .await;
        audit(&req.admin, action, &target, &outcome);
        outcome
    }

    #[tracing::instrument(skip_all)]
    pub(crate) async fn admin_protect_media(&self, req: AdminProtectMediaRequest) -> Result<AdminMediaCount> {
        let action = if req.protect { "protect_media" } else { "unprotect_media" };
        let target = req.media.as_ref().map(|m| format!("{}/{}", m.server_name, m.media_id)).unwrap_or_default();
        let outcome = async {
            let media = req.media.as_ref().ok_or_else(|| Error::invalid_param("no media named"))?;
            let media_id = self.local_ref(media)?;
            if !db::admin::protect(&self.pool, &media_id, req.protect).await? {
                return Err(Error::not_found("Unknown media ID"));
            }
            Ok(AdminMediaCount { count: 1 })
        }
        .await;
        audit(&req.admin, action, &target, &outcome);
        outcome
    }

    #[tracing::instrument(skip_all)]
    pub(crate) async fn admin_delete_media(&self, req: AdminDeleteMediaRequest) -> Result<AdminDeletedMedia> {
        let target = format!("{:?}", req.selection.as_ref().and_then(|s| s.which.as_ref()));
        let outcome = async {
            let (ids, named) = match self.selected(req.selection.clone()).await? {
                Selected::Ids { ids, named } => (ids, named),
                Selected::User(user_id) => (db::admin::user_media_ids(&self.pool, &user_id).await?, false),
            };
            let (deleted, blobs) = db::admin::delete(&self.pool, &ids).await?;
            if named && deleted.is_empty() {
                return Err(Error::not_found("Unknown media ID"));
            }
            self.drop_unused_blobs(blobs).await;
            Ok(AdminDeletedMedia { media_ids: deleted })
        }
        .await;
        audit(&req.admin, "delete_media", &target, &outcome);
        outcome
    }

    /// Removes the blobs no media or thumbnail names any more. A failure leaves an orphan
    /// blob behind (logged), never a row without its blob.
    async fn drop_unused_blobs(&self, blobs: Vec<String>) {
        for sha256 in blobs {
            let dropped = async {
                let mut client = self.pool.get().await?;
                let tx = client.transaction().await?;
                db::blob_lock::exclusive(&tx, &sha256).await?;
                if !db::admin::blob_in_use(&tx, &sha256).await? {
                    self.store.delete(&sha256).await?;
                }
                tx.commit().await?;
                Ok::<_, Error>(())
            };
            if let Err(e) = dropped.await {
                tracing::warn!(sha256 = %sha256, error = %e, "removing a deleted media's blob failed");
            }
        }
    }

    #[tracing::instrument(skip_all)]
    pub(crate) async fn admin_list_media(&self, req: AdminListMediaRequest) -> Result<AdminMediaList> {
        let page = req.page.ok_or_else(|| Error::invalid_param("no page asked for"))?;
        check_page(&page)?;
        let (media, total) = db::admin::user_media(&self.pool, &page).await?;
        Ok(AdminMediaList { media, total })
    }
}
