//! Kinesis Data Streams sink: `PutRecords` packed to the service limits, retrying only
//! the records the service failed. With `?aggregate=true` the outputs of one partition
//! key go as KPL aggregates (`crate::kpl`) of up to 50 KiB, the KPL's own default: fewer
//! records to pay for and to count against a shard's 1,000 a second, for consumers that
//! deaggregate (the KCL, this host, Lambda functions with AWS's deaggregation modules).
//! An aggregate the service refuses fails, or is retried, with all its outputs' records.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Range;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use super::{DeliveryFailure, RetryPolicy, gzip, send_with_retries};
use crate::aws::describe_error;
use crate::record::{FailureKind, Output};

/// Records per `PutRecords` call.
const MAX_RECORDS: usize = 500;
/// Bytes (data + partition keys) per `PutRecords` call.
const MAX_CALL_BYTES: usize = 5 << 20;
/// Bytes (data + partition key) per record.
const MAX_RECORD_BYTES: usize = 1 << 20;
/// Bytes of user data per aggregate: the KPL's default `AggregationMaxSize`.
const AGGREGATE_BYTES: usize = 51_200;
/// What a user record costs an aggregate besides its data, at most: its protobuf tags
/// and lengths, its key's index, a table entry for its key.
const PER_USER_RECORD: usize = 32;

/// Writes outputs to one Kinesis stream.
#[derive(Debug, Clone)]
pub struct KinesisSink {
    client: aws_sdk_kinesis::Client,
    stream: String,
    gzip: bool,
    aggregate: bool,
}

/// One record ready to send, and the input items whose outputs it carries (one, or an
/// aggregate's several).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) items: Vec<usize>,
    pub(crate) data: Vec<u8>,
    pub(crate) partition_key: String,
}

impl Entry {
    fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

impl KinesisSink {
    /// A sink writing to `stream`, gzip-compressing each record when `gzip` is set.
    pub fn new(client: aws_sdk_kinesis::Client, stream: String, gzip: bool) -> Self {
        Self {
            client,
            stream,
            gzip,
            aggregate: false,
        }
    }

    /// The same sink, packing the outputs of one partition key into KPL aggregates.
    pub fn aggregating(self) -> Self {
        Self {
            aggregate: true,
            ..self
        }
    }

    /// Sends `outputs`; returns the ones that could not be delivered, and why.
    pub async fn deliver(
        &self,
        outputs: Vec<(usize, &Output)>,
        retry: RetryPolicy,
    ) -> Vec<DeliveryFailure> {
        let (mut pending, mut failures) = prepare(outputs, self.gzip);
        if self.aggregate {
            pending = aggregate(pending);
        }
        let send = async |chunk: &[Entry]| {
            let records = chunk
                .iter()
                .map(|e| {
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(e.data.clone()))
                        .partition_key(&e.partition_key)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let response = self
                .client
                .put_records()
                .stream_name(&self.stream)
                .set_records(Some(records))
                .send()
                .await
                .map_err(|e| describe_error(&e))?;
            Ok(response
                .records()
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    let code = r.error_code()?;
                    Some((
                        i,
                        format!("{code}: {}", r.error_message().unwrap_or_default()),
                    ))
                })
                .collect())
        };
        let key = |e: &Entry| Some(e.partition_key.clone());
        let left = send_with_retries(pending, retry, pack, key, send).await;
        let call = format!("Kinesis stream {}: PutRecords", self.stream);
        failures.extend(left.failures_of_each(&call, retry, |e| e.items.clone()));
        failures
    }
}

/// Compresses, keys and size-checks outputs; an output over the record limit fails here.
pub(crate) fn prepare(
    outputs: Vec<(usize, &Output)>,
    compress: bool,
) -> (Vec<Entry>, Vec<DeliveryFailure>) {
    let mut entries = Vec::with_capacity(outputs.len());
    let mut failures = Vec::new();
    for (item, output) in outputs {
        let data = if compress {
            gzip(&output.payload)
        } else {
            output.payload.to_vec()
        };
        let entry = Entry {
            items: vec![item],
            data,
            partition_key: partition_key(output),
        };
        if entry.size() > MAX_RECORD_BYTES {
            failures.push(DeliveryFailure {
                item,
                kind: FailureKind::OutputTooLarge,
                message: format!(
                    "a Kinesis record of {} bytes exceeds the 1 MiB limit",
                    entry.size()
                ),
            });
        } else {
            entries.push(entry);
        }
    }
    (entries, failures)
}

impl KinesisSink {
    /// What can be known about `output` before sending: its size, when it is sent as is
    /// (a gzip record's size is known only once compressed, at delivery).
    pub fn check(&self, output: &Output) -> Result<(), (FailureKind, String)> {
        let size = output.payload.len() + partition_key(output).len();
        if !self.gzip && size > MAX_RECORD_BYTES {
            return Err((
                FailureKind::OutputTooLarge,
                format!("a Kinesis record of {size} bytes exceeds the 1 MiB limit"),
            ));
        }
        Ok(())
    }
}

/// Kinesis needs a partition key of 1 to 256 characters: the output's key when it is
/// one, a stable hash of it when it is not, a hash of the payload when there is none.
fn partition_key(output: &Output) -> String {
    let hash = |bytes: &[u8]| {
        let mut hasher = DefaultHasher::new();
        bytes.hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    };
    match &output.key {
        Some(key) => match std::str::from_utf8(key) {
            Ok(text) if !text.is_empty() && text.chars().count() <= 256 => text.to_owned(),
            _ => hash(key),
        },
        None => hash(&output.payload),
    }
}

/// The entries of each partition key, in order, packed into aggregates of up to
/// [`AGGREGATE_BYTES`] of user data; a record too large for one, or alone, stays as it is.
pub(crate) fn aggregate(entries: Vec<Entry>) -> Vec<Entry> {
    let mut keys: Vec<String> = Vec::new();
    let mut by_key: std::collections::HashMap<String, Vec<Entry>> = Default::default();
    for entry in entries {
        if !by_key.contains_key(&entry.partition_key) {
            keys.push(entry.partition_key.clone());
        }
        by_key
            .entry(entry.partition_key.clone())
            .or_default()
            .push(entry);
    }
    let mut packed = Vec::new();
    for key in keys {
        let mut group: Vec<Entry> = Vec::new();
        let mut size = 0;
        for entry in by_key.remove(&key).unwrap_or_default() {
            let cost = entry.data.len() + PER_USER_RECORD;
            if !group.is_empty() && size + cost > AGGREGATE_BYTES {
                packed.push(aggregate_of(std::mem::take(&mut group)));
                size = 0;
            }
            size += cost;
            group.push(entry);
        }
        if !group.is_empty() {
            packed.push(aggregate_of(group));
        }
    }
    packed
}

/// One aggregate of `group` (entries of one key), or its one entry as it is.
fn aggregate_of(mut group: Vec<Entry>) -> Entry {
    if group.len() == 1 {
        return group.remove(0);
    }
    let key = group[0].partition_key.clone();
    let data = crate::kpl::aggregate(group.iter().map(|e| (key.as_str(), &e.data[..])));
    let mut items: Vec<usize> = group.iter().flat_map(|e| e.items.iter().copied()).collect();
    items.dedup();
    Entry {
        items,
        data,
        partition_key: key,
    }
}

/// Splits entries into consecutive calls of at most 500 records and 5 MiB.
pub(crate) fn pack(entries: &[Entry]) -> Vec<Range<usize>> {
    super::pack(entries, MAX_RECORDS, MAX_CALL_BYTES, Entry::size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(size: usize) -> Output {
        Output {
            payload: vec![b'x'; size].into(),
            key: Some("k".into()),
            ..Output::default()
        }
    }

    #[test]
    fn packs_by_count_and_by_bytes() {
        let small: Vec<Output> = (0..1001).map(|_| output(10)).collect();
        let (entries, failures) = prepare(small.iter().enumerate().collect(), false);
        assert!(failures.is_empty());
        assert_eq!(pack(&entries), [0..500, 500..1000, 1000..1001]);
        let big: Vec<Output> = (0..11).map(|_| output(1_000_000)).collect();
        let (entries, _) = prepare(big.iter().enumerate().collect(), false);
        assert_eq!(pack(&entries), [0..5, 5..10, 10..11]);
    }

    #[test]
    fn an_oversize_record_fails_alone_with_its_reason() {
        let outputs = [output(10), output(1 << 20), output(10)];
        let (entries, failures) = prepare(outputs.iter().enumerate().collect(), false);
        assert_eq!(entries.len(), 2);
        assert_eq!(failures.len(), 1);
        assert_eq!(
            (failures[0].item, failures[0].kind),
            (1, FailureKind::OutputTooLarge)
        );
        assert!(
            failures[0].message.contains("exceeds the 1 MiB limit"),
            "{}",
            failures[0].message
        );
    }

    fn keyed(key: &str, size: usize) -> Output {
        Output {
            payload: vec![b'x'; size].into(),
            key: Some(key.as_bytes().to_vec().into()),
            ..Output::default()
        }
    }

    #[test]
    fn outputs_of_one_key_go_as_aggregates_the_kpl_reads_back_in_order() {
        let outputs = [
            keyed("a", 10),
            keyed("b", 10),
            keyed("a", 20),
            keyed("a", 30),
        ];
        let (entries, _) = prepare(outputs.iter().enumerate().collect(), false);
        let packed = aggregate(entries);
        assert_eq!(packed.len(), 2);
        assert_eq!(
            (packed[0].partition_key.as_str(), &packed[0].items[..]),
            ("a", &[0, 2, 3][..])
        );
        assert_eq!(
            (packed[1].partition_key.as_str(), &packed[1].items[..]),
            ("b", &[1][..])
        );
        assert_eq!(packed[1].data, vec![b'x'; 10], "alone: as it is");
        let records = crate::kpl::deaggregate(&packed[0].data.clone().into())
            .expect("readable")
            .expect("an aggregate");
        let sizes: Vec<usize> = records.iter().map(|r| r.data.len()).collect();
        assert_eq!(sizes, [10, 20, 30]);
        assert!(records.iter().all(|r| r.partition_key == "a"));
    }

    #[test]
    fn aggregates_stay_within_the_kpl_size_and_large_records_go_alone() {
        let outputs: Vec<Output> = (0..10)
            .map(|_| keyed("k", 20_000))
            .chain([keyed("k", 60_000)])
            .collect();
        let (entries, _) = prepare(outputs.iter().enumerate().collect(), false);
        let packed = aggregate(entries);
        // Two records of 20,000 fit in 51,200; the 60,000 one is sent on its own.
        let items: Vec<Vec<usize>> = packed.iter().map(|e| e.items.clone()).collect();
        assert_eq!(
            items,
            [
                vec![0, 1],
                vec![2, 3],
                vec![4, 5],
                vec![6, 7],
                vec![8, 9],
                vec![10]
            ]
        );
        assert!(
            packed[..5]
                .iter()
                .all(|e| e.data.len() < AGGREGATE_BYTES + 100)
        );
        assert_eq!(packed[5].data.len(), 60_000);
    }

    #[test]
    fn partition_keys_are_always_valid() {
        let long = Output {
            key: Some(vec![b'a'; 300].into()),
            ..output(1)
        };
        assert_eq!(partition_key(&long).len(), 16);
        assert_eq!(partition_key(&output(1)), "k");
        assert_eq!(
            partition_key(&Output {
                key: None,
                ..output(1)
            })
            .len(),
            16
        );
    }
}
