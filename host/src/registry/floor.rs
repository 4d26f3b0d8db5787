//! The lowest publish sequence a plugin location may serve, kept outside the bucket.
//!
//! A host never swaps to a manifest older than the one it serves, but that floor lived in
//! memory: whoever can write the bucket could put an older signed manifest back as live,
//! and every new host (each cold start) would serve it. With the idempotency table
//! configured, the floor is kept there too, as one item per plugin location that only
//! rises (a conditional update): a cold start reads it before taking the manifest, and
//! every version a host takes raises it. Writing the bucket does not lower it; that takes
//! write access to the table.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::aws::AwsError;

/// The floor of one plugin location, in the idempotency table.
#[derive(Debug, Clone)]
pub struct SequenceFloor {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// The item's key: `plugin-floor:s3://BUCKET/KEY` (never a record identity, which
    /// all start with their source's name and a slash).
    id: String,
}

impl SequenceFloor {
    /// The floor of the manifest at `manifest` (`s3://bucket/plugins/enrich/manifest.json`).
    pub fn new(client: aws_sdk_dynamodb::Client, table: String, manifest: &str) -> Self {
        Self {
            client,
            table,
            id: format!("plugin-floor:{manifest}"),
        }
    }

    fn what(&self) -> String {
        format!("the plugin sequence floor in DynamoDB table {}", self.table)
    }

    /// The floor, read consistently: 0 when none was kept yet.
    pub async fn read(&self) -> Result<u64, AwsError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(self.id.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::of(self.what(), &e))?;
        let Some(value) = item.item().and_then(|item| item.get("sequence")) else {
            return Ok(0);
        };
        value
            .as_n()
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| AwsError {
                what: self.what(),
                reason: format!("its sequence is not a number: {value:?}"),
                out_of_time: false,
            })
    }

    /// Raises the floor to `sequence`; a floor already as high stays.
    pub async fn raise(&self, sequence: u64) -> Result<(), AwsError> {
        let raised = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(self.id.clone()))
            .update_expression("SET #sequence = :sequence")
            .condition_expression("attribute_not_exists(#sequence) OR #sequence < :sequence")
            .expression_attribute_names("#sequence", "sequence")
            .expression_attribute_values(":sequence", AttributeValue::N(sequence.to_string()))
            .send()
            .await;
        match raised {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error().is_some_and(|e| {
                    matches!(e, UpdateItemError::ConditionalCheckFailedException(_))
                }) =>
            {
                Ok(())
            }
            Err(e) => Err(AwsError::of(self.what(), &e)),
        }
    }
}
