//! DeleteTopics: deletes topics named by name (v1-5 `topic_names`) or by name or id (v6 `topics`) through
//! the controller; `Broker::reconcile` then removes their partition directories. Malformed entries (neither
//! or both of name and id, a name or id given twice) are refused one by one, as Kafka's controller does, and
//! the rest of the request is carried out. With delete.topic.enable=false every entry is refused.

use std::collections::{HashMap, HashSet};

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use uuid::Uuid;

use super::RequestContext;
use crate::controller::{self, ControllerError, MetadataImage, TopicRef};
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 6 };

/// The first version that answers TOPIC_DELETION_DISABLED; older clients get INVALID_REQUEST.
const FIRST_VERSION_WITH_DELETION_DISABLED: i16 = 3;

/// What the request asks for one of its entries.
#[derive(Debug)]
pub enum Planned {
    Delete(TopicRef),
    Refuse { name: Option<String>, topic_id: Uuid, error: ControllerError },
}

fn invalid(name: Option<String>, topic_id: Uuid, message: &str) -> Planned {
    Planned::Refuse { name, topic_id, error: ControllerError::InvalidRequest(message.to_string()) }
}

/// Sorts the entries, each (name, id) with an empty name and the nil id meaning absent, into deletions and
/// refusals, in request order. A duplicated name or id is refused once and not deleted.
pub fn plan_entries(entries: &[(Option<String>, Uuid)]) -> Vec<Planned> {
    let mut name_counts: HashMap<&str, usize> = HashMap::new();
    let mut id_counts: HashMap<Uuid, usize> = HashMap::new();
    for (name, id) in entries {
        match (name.as_deref(), id.is_nil()) {
            (Some(name), true) => *name_counts.entry(name).or_default() += 1,
            (None, false) => *id_counts.entry(*id).or_default() += 1,
            _ => {}
        }
    }
    let mut refused_names = HashSet::new();
    let mut refused_ids = HashSet::new();
    let mut planned = Vec::with_capacity(entries.len());
    for (name, id) in entries {
        match (name, id.is_nil()) {
            (None, true) => planned.push(invalid(None, Uuid::nil(), "Neither topic name nor id were specified.")),
            (Some(name), false) => planned.push(invalid(Some(name.clone()), *id, "You may not specify both topic name and topic id.")),
            (Some(name), true) if name_counts[name.as_str()] > 1 => {
                if refused_names.insert(name.as_str()) {
                    planned.push(invalid(Some(name.clone()), Uuid::nil(), "Duplicate topic name."));
                }
            }
            (None, false) if id_counts[id] > 1 => {
                if refused_ids.insert(*id) {
                    planned.push(invalid(None, *id, "Duplicate topic id."));
                }
            }
            (Some(name), true) => planned.push(Planned::Delete(TopicRef::Name(name.clone()))),
            (None, false) => planned.push(Planned::Delete(TopicRef::Id(*id))),
        }
    }
    planned
}

/// A name whose topic is also named by its id in the same request is ambiguous: Kafka deletes neither entry.
pub fn refuse_names_of_ids_also_given(planned: Vec<Planned>, image: &MetadataImage) -> Vec<Planned> {
    let ids: HashSet<Uuid> = planned.iter().filter_map(|p| if let Planned::Delete(TopicRef::Id(id)) = p { Some(*id) } else { None }).collect();
    let clashing: HashSet<Uuid> = planned
        .iter()
        .filter_map(|p| match p {
            Planned::Delete(TopicRef::Name(name)) => image.topic(name).map(|t| t.topic_id).filter(|id| ids.contains(id)),
            _ => None,
        })
        .collect();
    if clashing.is_empty() {
        return planned;
    }
    const MESSAGE: &str = "The provided topic name maps to an ID that was already supplied.";
    planned
        .into_iter()
        .map(|p| match p {
            Planned::Delete(TopicRef::Id(id)) if clashing.contains(&id) => invalid(image.topic_by_id(&id).map(|t| t.name.clone()), id, MESSAGE),
            Planned::Delete(TopicRef::Name(name)) => match image.topic(&name).map(|t| t.topic_id).filter(|id| clashing.contains(id)) {
                Some(id) => invalid(Some(name), id, MESSAGE),
                None => Planned::Delete(TopicRef::Name(name)),
            },
            other => other,
        })
        .collect()
}

fn result_row(version: i16, name: Option<String>, topic_id: Uuid, outcome: Result<(), ControllerError>) -> DeletableTopicResult {
    let mut row = DeletableTopicResult::default().with_name(name.map(|n| TopicName(StrBytes::from_string(n))));
    if version >= 6 {
        row.topic_id = topic_id;
    }
    row.error_code = outcome.as_ref().err().map_or(0, |e| e.error_code());
    row.error_message = if version >= 5 { outcome.err().map(|e| StrBytes::from_string(e.to_string())) } else { None };
    row
}

/// Deletes one topic and says how the answer names it: by its name, and by its id (v6) when it existed.
async fn delete_one(ctx: &RequestContext, target: TopicRef) -> (Option<String>, Uuid, Result<(), ControllerError>) {
    let image = ctx.broker.image();
    let (name, topic_id) = match (controller::resolve_topic(&image, &target), &target) {
        (Ok(topic), _) => (Some(topic.name.clone()), topic.topic_id),
        (Err(_), TopicRef::Name(name)) => (Some(name.clone()), Uuid::nil()),
        (Err(_), TopicRef::Id(id)) => (None, *id),
    };
    let outcome = ctx.broker.delete_topic(&target).await;
    match &outcome {
        Ok(()) => tracing::info!(topic = name.as_deref().unwrap_or_default(), %topic_id, client_id = %ctx.client_id, "deleted topic"),
        Err(e) => tracing::debug!(topic = ?name, %topic_id, error = %e, "delete topic refused"),
    }
    (name, topic_id, outcome)
}

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let version = header.request_api_version;
    let entries: Vec<(Option<String>, Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.to_string()).filter(|n| !n.is_empty()), t.topic_id))
            .collect()
    } else {
        request.topic_names.into_iter().map(|n| (Some(n.0.to_string()), Uuid::nil())).collect()
    };

    if !ctx.broker.config.get_bool("delete.topic.enable") {
        let responses = entries
            .into_iter()
            .map(|(name, topic_id)| {
                let error = if version >= FIRST_VERSION_WITH_DELETION_DISABLED {
                    ControllerError::TopicDeletionDisabled
                } else {
                    ControllerError::InvalidRequest("Topic deletion is disabled.".into())
                };
                result_row(version, name, topic_id, Err(error))
            })
            .collect();
        return DeleteTopicsResponse::default().with_responses(responses);
    }

    let planned = refuse_names_of_ids_also_given(plan_entries(&entries), &ctx.broker.image());
    let mut responses = Vec::with_capacity(planned.len());
    for p in planned {
        responses.push(match p {
            Planned::Refuse { name, topic_id, error } => result_row(version, name, topic_id, Err(error)),
            Planned::Delete(target) => {
                let (name, topic_id, outcome) = delete_one(ctx, target).await;
                result_row(version, name, topic_id, outcome)
            }
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{plan_create_topic, NewTopic};

    fn by_name(name: &str) -> (Option<String>, Uuid) {
        (Some(name.to_string()), Uuid::nil())
    }

    fn by_id(id: u128) -> (Option<String>, Uuid) {
        (None, Uuid::from_u128(id))
    }

    fn refusal(planned: &Planned) -> Option<(Option<&str>, Uuid, String)> {
        match planned {
            Planned::Refuse { name, topic_id, error } => Some((name.as_deref(), *topic_id, error.to_string())),
            Planned::Delete(_) => None,
        }
    }

    #[test]
    fn malformed_and_duplicate_entries_are_refused_once_each() {
        let entries = vec![
            (None, Uuid::nil()),
            (Some("both".to_string()), Uuid::from_u128(9)),
            by_name("dup"),
            by_name("ok"),
            by_name("dup"),
            by_id(7),
            by_id(7),
            by_id(8),
        ];
        let planned = plan_entries(&entries);
        assert_eq!(planned.len(), 6);
        assert_eq!(refusal(&planned[0]), Some((None, Uuid::nil(), "Neither topic name nor id were specified.".into())));
        assert_eq!(refusal(&planned[1]), Some((Some("both"), Uuid::from_u128(9), "You may not specify both topic name and topic id.".into())));
        assert_eq!(refusal(&planned[2]), Some((Some("dup"), Uuid::nil(), "Duplicate topic name.".into())));
        assert!(matches!(&planned[3], Planned::Delete(TopicRef::Name(n)) if n == "ok"));
        assert_eq!(refusal(&planned[4]), Some((None, Uuid::from_u128(7), "Duplicate topic id.".into())));
        assert!(matches!(&planned[5], Planned::Delete(TopicRef::Id(id)) if *id == Uuid::from_u128(8)));
    }

    #[test]
    fn a_name_and_the_id_of_the_same_topic_delete_nothing() {
        let mut image = MetadataImage::with_live_brokers(&[1]);
        let topic = NewTopic { name: "t".into(), num_partitions: 1, replication_factor: 1, configs: Default::default(), assignments: None };
        plan_create_topic(&image, &topic).unwrap().iter().for_each(|r| image.apply(r));
        let id = image.topic("t").unwrap().topic_id;
        let planned = refuse_names_of_ids_also_given(plan_entries(&[(None, id), by_name("t"), by_name("other")]), &image);
        assert!(matches!(&planned[0], Planned::Refuse { error: ControllerError::InvalidRequest(_), .. }));
        assert!(matches!(&planned[1], Planned::Refuse { error: ControllerError::InvalidRequest(_), .. }));
        assert!(matches!(&planned[2], Planned::Delete(TopicRef::Name(n)) if n == "other"));
    }

    #[test]
    fn rows_carry_id_and_message_only_where_the_version_has_them() {
        let id = Uuid::from_u128(3);
        let v4 = result_row(4, Some("t".into()), id, Err(ControllerError::UnknownTopic("t".into())));
        assert_eq!((v4.error_code, v4.topic_id, v4.error_message), (3, Uuid::nil(), None));
        let v6 = result_row(6, None, id, Err(ControllerError::UnknownTopicId(id)));
        assert_eq!((v6.error_code, v6.topic_id, v6.name), (100, id, None));
        assert!(v6.error_message.is_some());
        let ok = result_row(6, Some("t".into()), id, Ok(()));
        assert_eq!((ok.error_code, ok.error_message), (0, None));
    }
}
