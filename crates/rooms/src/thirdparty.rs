//! Third-party networks (`/thirdparty/*`): the protocols application services declare, and
//! lookups of remote users and locations, asked of every appservice declaring the protocol
//! and merged (as Synapse: the first description of a protocol with every appservice's
//! instances; lookup answers concatenated). Descriptions are kept for a while.

use std::collections::{BTreeMap, BTreeSet};

use ruma::api::appservice::thirdparty::{
    get_location_for_protocol, get_location_for_room_alias, get_protocol, get_user_for_protocol, get_user_for_user_id,
};
use serde_json::{Map, Value};
use trellis_core::{Error, Result, appservice::Appservice};
use trellis_proto::rooms::{ThirdpartyRequest, ThirdpartyResponse};

use crate::Rooms;

impl Rooms {
    #[tracing::instrument(skip_all, fields(kind = %req.kind, protocol = %req.protocol))]
    pub(crate) async fn thirdparty(&self, req: ThirdpartyRequest) -> Result<ThirdpartyResponse> {
        let fields: BTreeMap<String, String> = req.fields.into_iter().collect();
        let answer = match req.kind.as_str() {
            "protocols" => {
                let names: BTreeSet<&String> = self
                    .settings
                    .appservices
                    .all()
                    .iter()
                    .flat_map(|a| a.registration.protocols.iter().flatten())
                    .collect();
                let mut all = Map::new();
                for name in names {
                    if let Some(description) = self.protocol(name).await {
                        all.insert(name.clone(), description);
                    }
                }
                Value::Object(all)
            }
            "protocol" => self.protocol(&req.protocol).await.ok_or_else(|| Error::not_found("No such protocol"))?,
            "user" | "location" => {
                let mut found = Vec::new();
                for appservice in self.declaring(&req.protocol) {
                    let answer = match req.kind.as_str() {
                        "user" => {
                            let mut request = get_user_for_protocol::v1::Request::new(req.protocol.clone());
                            request.fields = fields.clone();
                            self.appservice_http.ask(appservice, request).await
                        }
                        _ => {
                            let mut request = get_location_for_protocol::v1::Request::new(req.protocol.clone());
                            request.fields = fields.clone();
                            self.appservice_http.ask(appservice, request).await
                        }
                    };
                    found.extend(list(answer));
                }
                Value::Array(found)
            }
            "user_by_id" => {
                let user = fields.get("userid").ok_or_else(|| Error::missing_param("Missing params: userid"))?;
                let user = ruma::UserId::parse(user).map_err(|_| Error::invalid_param("invalid userid"))?;
                let mut found = Vec::new();
                for appservice in self.settings.appservices.all() {
                    let request = get_user_for_user_id::v1::Request::new(user.clone());
                    found.extend(list(self.appservice_http.ask(appservice, request).await));
                }
                Value::Array(found)
            }
            "location_by_alias" => {
                let alias = fields.get("alias").ok_or_else(|| Error::missing_param("Missing params: alias"))?;
                let alias = ruma::RoomAliasId::parse(alias).map_err(|_| Error::invalid_param("invalid alias"))?;
                let mut found = Vec::new();
                for appservice in self.settings.appservices.all() {
                    let request = get_location_for_room_alias::v1::Request::new(alias.clone());
                    found.extend(list(self.appservice_http.ask(appservice, request).await));
                }
                Value::Array(found)
            }
            other => return Err(Error::invalid_param(format!("unknown third-party lookup {other:?}"))),
        };
        Ok(ThirdpartyResponse { json: answer.to_string() })
    }

    fn declaring(&self, protocol: &str) -> impl Iterator<Item = &Appservice> {
        self.settings.appservices.all().iter().filter(move |a| a.has_protocol(protocol))
    }

    /// The protocol as the appservices declaring it describe it: the first description, with
    /// the instances of all of them (an instance with a `network_id` gets its `instance_id`,
    /// `{appservice}|{network}`, which `/publicRooms` takes as `third_party_instance_id`).
    async fn protocol(&self, protocol: &str) -> Option<Value> {
        let mut merged: Option<Value> = None;
        let mut instances = Vec::new();
        for appservice in self.declaring(protocol) {
            let description = match self.appservice_http.cached_protocol(appservice.id(), protocol) {
                Some(description) => Some(description),
                None => {
                    let request = get_protocol::v1::Request::new(protocol.to_owned());
                    let answer = self.appservice_http.ask(appservice, request).await.filter(Value::is_object);
                    if let Some(answer) = &answer {
                        self.appservice_http.remember_protocol(appservice.id(), protocol, answer.clone());
                    }
                    answer
                }
            };
            let Some(description) = description else { continue };
            for mut instance in list(description.get("instances").cloned()) {
                if let Some(network) = instance.get("network_id").and_then(Value::as_str).map(str::to_owned) {
                    instance["instance_id"] = Value::String(format!("{}|{network}", appservice.id()));
                }
                instances.push(instance);
            }
            merged.get_or_insert(description);
        }
        let mut merged = merged?;
        merged["instances"] = Value::Array(instances);
        Some(merged)
    }
}

/// The entries of an answer that should be a JSON array (nothing for anything else).
fn list(answer: Option<Value>) -> Vec<Value> {
    match answer {
        Some(Value::Array(entries)) => entries,
        _ => Vec::new(),
    }
}
