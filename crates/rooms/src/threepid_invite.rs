//! Third-party invites (spec "Third-party invites"): inviting an address no one has bound yet
//! stores the invite on the identity server and shows it in the room as an
//! `m.room.third_party_invite` state event keyed by the identity server's token. Once the
//! address is bound the identity server calls `/3pid/onbind`, and each invite it carries
//! becomes the user's `invite` membership, sent as the original inviter, when the signature
//! over it matches a key of the room's invite event and the identity server still vouches for
//! that key (the authorization rules check the signature again).

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, RoomId, UserId,
    events::{
        StateEventType,
        room::third_party_invite::{PublicKey, RoomThirdPartyInviteEventContent},
    },
    serde::Base64,
    signatures::{SigningKeyAlgorithm, to_canonical_json_string_for_signing, verify_canonical_json_bytes},
};
use serde_json::{Value, json};
use trellis_core::{Error, Result, ids::identity_server_base};
use trellis_proto::rooms::{BoundInvite, Empty, InviteThreepidRequest, ThreepidBoundRequest};

use crate::{
    Rooms,
    identity_server::{self, StoreInvite, Stored},
    new_event::NewEvent,
};

impl Rooms {
    #[tracing::instrument(skip_all, fields(sender = %req.sender, room = %req.room_id))]
    pub(crate) async fn invite_threepid(&self, req: InviteThreepidRequest) -> Result<Empty> {
        let sender = UserId::parse(&req.sender)?;
        let room_id = RoomId::parse(&req.room_id).map_err(|_| Error::invalid_param("invalid room ID"))?;
        self.ensure_not_blocked(&room_id).await?;
        let state = self.snapshot(&room_id).await?;
        // Checked before the identity server hears of the invite (the authorization rules
        // decide again when the event is sent).
        if state.membership(sender.as_str()).as_deref() != Some("join") {
            return Err(Error::forbidden("You are not in this room"));
        }
        if !state.power_levels().user_can_invite(&sender) {
            return Err(Error::forbidden("You may not invite users to this room"));
        }
        let room = |kind: StateEventType, field: &str| state.content_str(&kind, "", field);
        let inviter = |field: &str| state.content_str(&StateEventType::RoomMember, sender.as_str(), field);
        let invite = StoreInvite {
            medium: &req.medium,
            address: &req.address,
            room_id: room_id.as_str(),
            sender: sender.as_str(),
            room_alias: room(StateEventType::RoomCanonicalAlias, "alias"),
            room_avatar_url: room(StateEventType::RoomAvatar, "url"),
            room_join_rules: Some(state.join_rule()),
            room_name: room(StateEventType::RoomName, "name"),
            room_type: room(StateEventType::RoomCreate, "type"),
            sender_display_name: inviter("displayname"),
            sender_avatar_url: inviter("avatar_url"),
        };
        let stored =
            identity_server::store_invite(&self.id_servers, &req.id_server, &req.id_access_token, &invite).await?;
        let (token, content) = invite_content(&req.id_server, stored)?;
        let event = NewEvent::state(&sender, "m.room.third_party_invite", &token, content)?;
        self.append(&room_id, None, vec![event]).await?;
        Ok(Empty {})
    }

    /// Every invite of an `/3pid/onbind` is tried; the last refusal is the answer, as Synapse
    /// gives it (the identity server may retry).
    #[tracing::instrument(skip_all, fields(invites = req.invites.len()))]
    pub(crate) async fn threepid_bound(&self, req: ThreepidBoundRequest) -> Result<Empty> {
        let mut refused = None;
        for invite in req.invites {
            let room_id = invite.room_id.clone();
            if let Err(e) = self.exchange_invite(invite).await {
                tracing::info!(room = %room_id, error = %e, "third-party invite refused");
                refused = Some(e);
            }
        }
        refused.map_or(Ok(Empty {}), Err)
    }

    /// One bound invite: checked against the room's invite event and the identity server,
    /// then sent as the inviter's `invite` of the user (nothing when they are already in).
    async fn exchange_invite(&self, invite: BoundInvite) -> Result<()> {
        let room_id = RoomId::parse(&invite.room_id).map_err(|_| Error::invalid_param("invalid room ID"))?;
        let sender = UserId::parse(&invite.sender)?;
        let signed: CanonicalJsonObject =
            serde_json::from_str(&invite.signed_json).map_err(|_| Error::bad_json("signed must be a JSON object"))?;
        let (Some(CanonicalJsonValue::String(mxid)), Some(CanonicalJsonValue::String(token))) =
            (signed.get("mxid"), signed.get("token"))
        else {
            return Err(Error::bad_json("signed must hold mxid and token"));
        };
        if *mxid != invite.mxid {
            return Err(Error::forbidden("The signed mxid is not the invited user"));
        }
        let target = UserId::parse(mxid)?;
        let state = self.snapshot(&room_id).await?;
        if matches!(state.membership(target.as_str()).as_deref(), Some("join" | "invite")) {
            return Ok(());
        }
        let invite_event = state
            .get(&StateEventType::RoomThirdPartyInvite, token)
            .ok_or_else(|| Error::forbidden("No third-party invite in the room has this token"))?;
        if invite_event.sender != sender {
            return Err(Error::forbidden("The third-party invite was sent by someone else"));
        }
        let invited: RoomThirdPartyInviteEventContent = serde_json::from_str(invite_event.content_str())
            .map_err(|_| Error::forbidden("The third-party invite was revoked"))?;
        let key = signing_key(&invited, &signed)
            .ok_or_else(|| Error::forbidden("No key of the third-party invite signed it"))?;
        if let Some(url) = key.key_validity_url.as_deref().filter(|u| !u.is_empty())
            && !identity_server::key_is_valid(&self.id_servers, url, &key.public_key.0).await
        {
            return Err(Error::forbidden("The identity server no longer vouches for the key that signed the invite"));
        }
        let mut content = serde_json::Map::new();
        content.insert("membership".into(), json!("invite"));
        let signed = serde_json::to_value(&signed)?;
        content.insert("third_party_invite".into(), json!({ "display_name": invited.display_name, "signed": signed }));
        self.send_membership(&sender, &room_id, &target, content, None).await?;
        Ok(())
    }
}

/// The `m.room.third_party_invite` state key and content for what the identity server
/// stored: its keys (the older single key first, checked at the identity server's usual
/// validity URL as Synapse does; the first of the list when it sent none) and the name to show.
fn invite_content(id_server: &str, stored: Stored) -> Result<(String, Value)> {
    let mut keys = stored.public_keys;
    let first = match stored.public_key {
        Some(key) => {
            let mut first = PublicKey::new(key);
            first.key_validity_url =
                Some(format!("{}/_matrix/identity/v2/pubkey/isvalid", identity_server_base(id_server)?));
            first
        }
        None => keys.first().cloned().ok_or_else(|| Error::bad_json("The identity server gave no public key"))?,
    };
    if keys.is_empty() {
        keys.push(first.clone());
    }
    let mut content = RoomThirdPartyInviteEventContent::new(
        stored.display_name,
        first.key_validity_url.unwrap_or_default(),
        first.public_key,
    );
    content.public_keys = Some(keys);
    Ok((stored.token, serde_json::to_value(content)?))
}

/// The key of the invite event that made one of the signatures of `signed` (spec: any
/// signature matching any public key of the invite will do).
fn signing_key(invited: &RoomThirdPartyInviteEventContent, signed: &CanonicalJsonObject) -> Option<PublicKey> {
    let canonical = to_canonical_json_string_for_signing(signed).ok()?;
    let Some(CanonicalJsonValue::Object(by_entity)) = signed.get("signatures") else { return None };
    let signatures: Vec<(SigningKeyAlgorithm, Vec<u8>)> = by_entity
        .values()
        .filter_map(|entity| match entity {
            CanonicalJsonValue::Object(keys) => Some(keys),
            _ => None,
        })
        .flatten()
        .filter_map(|(key_id, signature)| {
            let CanonicalJsonValue::String(signature) = signature else { return None };
            let algorithm = SigningKeyAlgorithm::from(key_id.split(':').next()?);
            Some((algorithm, Base64::<ruma::serde::base64::Standard>::parse(signature).ok()?.into_inner()))
        })
        .collect();
    let mut single = PublicKey::new(invited.public_key.clone());
    single.key_validity_url = Some(invited.key_validity_url.clone());
    invited.public_keys.iter().flatten().cloned().chain([single]).find(|key| {
        key.public_key.decode().is_ok_and(|bytes| {
            signatures.iter().any(|(algorithm, signature)| {
                verify_canonical_json_bytes(algorithm, &bytes, signature, canonical.as_bytes()).is_ok()
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use ruma::{
        signatures::{Ed25519KeyPair, sign_json},
        third_party_invite::IdentityServerBase64PublicKey,
    };

    use super::*;

    fn key() -> Ed25519KeyPair {
        Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "0".into()).unwrap()
    }

    fn invite_of(keys: &[&Ed25519KeyPair]) -> RoomThirdPartyInviteEventContent {
        let public = |k: &Ed25519KeyPair| IdentityServerBase64PublicKey::new(&k.public_key());
        let mut content = RoomThirdPartyInviteEventContent::new("B".into(), "https://is/valid".into(), public(keys[0]));
        content.public_keys = Some(keys.iter().map(|k| PublicKey::new(public(k))).collect());
        content
    }

    fn signed_by(key: &Ed25519KeyPair) -> CanonicalJsonObject {
        let mut signed = crate::new_event::object(json!({"mxid": "@b:localhost", "token": "t"})).unwrap();
        sign_json("is.example.org", key, &mut signed).unwrap();
        signed
    }

    #[test]
    fn a_signature_by_any_key_of_the_invite_names_that_key() {
        let (first, second, stranger) = (key(), key(), key());
        let invited = invite_of(&[&first, &second]);
        let found = signing_key(&invited, &signed_by(&second)).expect("the second key signed it");
        assert_eq!(found.public_key, IdentityServerBase64PublicKey::new(&second.public_key()));
        assert!(signing_key(&invited, &signed_by(&stranger)).is_none(), "a key the invite does not list");
        let mut tampered = signed_by(&first);
        tampered.insert("mxid".into(), CanonicalJsonValue::String("@mallory:localhost".into()));
        assert!(signing_key(&invited, &tampered).is_none(), "the signature covers mxid");
    }

    #[test]
    fn the_single_key_is_checked_at_the_usual_validity_url() {
        let stored = Stored {
            token: "tok".into(),
            public_keys: Vec::new(),
            public_key: Some(IdentityServerBase64PublicKey("a2V5".into())),
            display_name: "B...".into(),
        };
        let (token, content) = invite_content("is.example.org:8090", stored).unwrap();
        assert_eq!(token, "tok");
        let url = "https://is.example.org:8090/_matrix/identity/v2/pubkey/isvalid";
        assert_eq!(content["key_validity_url"], url);
        assert_eq!(content["public_keys"], json!([{"public_key": "a2V5", "key_validity_url": url}]));
    }
}
