//! S3 notifications (`Records[].s3`): not records but the objects they name, each pinned
//! to the version written. Reading the objects is `sources/s3.rs`; this file only says
//! which objects (and versions) a notification names.

use aws_lambda_events::event::s3::S3Event;

use super::{EventError, EventJson, EventKind, ObjectRef, parse};

/// The objects an S3 notification names; a record without bucket or key makes the whole
/// event an error.
pub(super) fn decode(event: EventJson<'_>) -> Result<Vec<ObjectRef>, EventError> {
    let event: S3Event = parse(EventKind::S3, event)?;
    let mut objects = Vec::new();
    for r in event.records {
        let (Some(bucket), Some(key)) = (r.s3.bucket.name, r.s3.object.key) else {
            return Err(EventError {
                expected: "S3".into(),
                reason: "a record without bucket or key".into(),
            });
        };
        let etag =
            r.s3.object
                .e_tag
                .map(|etag| etag.trim_matches('"').to_owned())
                .filter(|etag| !etag.is_empty());
        let version_id =
            r.s3.object
                .version_id
                .filter(|version| !version.is_empty() && version != "null");
        objects.push(ObjectRef {
            bucket,
            key: url_decode_key(&key),
            etag,
            version_id,
        });
    }
    Ok(objects)
}

/// S3 notification keys are form-encoded (`+` for space, `%XX`).
fn url_decode_key(key: &str) -> String {
    let spaced = key.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::sources::events::tests::decode_fixture;
    use crate::sources::events::{self, EventKind, ObjectRef, ObjectVersion};

    #[test]
    fn s3_keys_are_url_decoded() {
        let event = decode_fixture("s3-event.json");
        assert_eq!(
            event.objects,
            [ObjectRef {
                bucket: "incoming".into(),
                key: "raw/2026-11-24/events part=1.jsonl.gz".into(),
                etag: Some("0123456789abcdef0123456789abcdef".into()),
                version_id: None,
            }]
        );
    }

    #[test]
    fn an_s3_notification_names_a_version_and_null_names_none() {
        let event = |object: Value| {
            serde_json::json!({"Records": [{
                "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                "eventTime": "2026-11-24T13:00:00.000Z", "userIdentity": {},
                "requestParameters": {},
                "s3": {"bucket": {"name": "b"}, "object": object}
            }]})
        };
        let objects = |object: Value| {
            events::decode(EventKind::S3, event(object))
                .expect("an S3 event")
                .objects
        };
        let versioned = objects(serde_json::json!(
            {"key": "k.jsonl", "eTag": "\"e1\"", "versionId": "v1"}
        ));
        assert_eq!(versioned[0].etag.as_deref(), Some("e1"), "quotes trimmed");
        assert_eq!(versioned[0].version(), ObjectVersion::Id("v1"));
        // `null`: written while versioning was off or suspended, replaced in place by a
        // later write, so only the ETag tells this write from the next.
        let suspended = objects(serde_json::json!(
            {"key": "k.jsonl", "eTag": "e1", "versionId": "null"}
        ));
        assert_eq!(suspended[0].version_id, None);
        assert_eq!(suspended[0].version(), ObjectVersion::ETag("e1"));
        let bare = objects(serde_json::json!({"key": "k.jsonl"}));
        assert_eq!(bare[0].version(), ObjectVersion::Current);
    }
}
