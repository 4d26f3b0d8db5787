//! Partial `PutRecords` failures, injected at the SDK client layer (an interceptor)
//! around a real call to the emulator: the sink must resend only the failed records,
//! and give up on a record that keeps failing with the reason, never losing one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextMut,
};
use aws_sdk_kinesis::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_types::body::SdkBody;
use pipeline_host::record::{FailureKind, Output};
use pipeline_host::sinks::{KinesisSink, RetryPolicy};
use serde_json::{Value, json};

use crate::emulator::Moto;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Fails the records whose data matches `poison` on each of the first `calls` calls:
/// they are taken out of the request (so they are not stored) and reported as
/// throttled in the response, as Kinesis does.
#[derive(Debug, Clone)]
struct PartialFailure {
    poison: Vec<String>,
    calls: usize,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// Records sent per call.
    sent: Vec<usize>,
    /// For the call in flight: which positions were taken out.
    failed_positions: Vec<usize>,
    total: usize,
}

impl Intercept for PartialFailure {
    fn name(&self) -> &'static str {
        "PartialFailure"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let mut state = self.state.lock().map_err(|_| "poisoned")?;
        let body: Value =
            serde_json::from_slice(context.request().body().bytes().ok_or("streaming body")?)?;
        let records = body["Records"].as_array().ok_or("no Records")?.clone();
        state.sent.push(records.len());
        state.total = records.len();
        state.failed_positions.clear();
        if state.sent.len() > self.calls {
            return Ok(());
        }
        let mut kept = Vec::new();
        for (i, record) in records.into_iter().enumerate() {
            let data = record["Data"].as_str().ok_or("a record without Data")?;
            if self.poison.iter().any(|p| p == data) {
                state.failed_positions.push(i);
            } else {
                kept.push(record);
            }
        }
        let new_body = json!({"StreamName": body["StreamName"], "Records": kept}).to_string();
        let request = context.request_mut();
        request
            .headers_mut()
            .insert("content-length", new_body.len().to_string());
        *request.body_mut() = SdkBody::from(new_body);
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let state = self.state.lock().map_err(|_| "poisoned")?;
        if state.failed_positions.is_empty() {
            return Ok(());
        }
        let records: Vec<Value> = (0..state.total)
            .map(|i| {
                if state.failed_positions.contains(&i) {
                    json!({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard"})
                } else {
                    json!({"SequenceNumber": format!("{i}"), "ShardId": "shardId-000000000000"})
                }
            })
            .collect();
        let body = json!({"FailedRecordCount": state.failed_positions.len(), "Records": records})
            .to_string();
        *context.response_mut().body_mut() = SdkBody::from(body);
        Ok(())
    }
}

async fn sink_with_faults(
    moto: &Moto,
    poison: &[&str],
    calls: usize,
) -> (KinesisSink, Arc<Mutex<State>>, crate::emulator::Clients) {
    let aws = moto.clients().await;
    aws.stream("out").await;
    let state = Arc::new(Mutex::new(State::default()));
    let interceptor = PartialFailure {
        poison: poison.iter().map(|p| base64(p)).collect(),
        calls,
        state: state.clone(),
    };
    let config = aws
        .kinesis
        .config()
        .to_builder()
        .interceptor(interceptor)
        .build();
    let client = aws_sdk_kinesis::Client::from_conf(config);
    (KinesisSink::new(client, "out".into(), false), state, aws)
}

fn base64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// One output per text, each with its own partition key.
fn outputs(texts: &[&str]) -> Vec<Output> {
    keyed(texts, |t| t)
}

fn keyed(texts: &[&str], key: impl Fn(&str) -> &str) -> Vec<Output> {
    texts
        .iter()
        .map(|t| Output {
            payload: t.as_bytes().to_vec().into(),
            key: Some(key(t).to_owned().into()),
            ..Output::default()
        })
        .collect()
}

const RETRY: RetryPolicy = RetryPolicy {
    budget: pipeline_host::limits::Budget::unbounded(),
    max_attempts: 3,
    base_delay: Duration::from_millis(1),
};

#[tokio::test(flavor = "multi_thread")]
async fn only_the_failed_records_are_sent_again() {
    let moto = Moto::start();
    let (sink, state, aws) = sink_with_faults(&moto, &["r1", "r3"], 1).await;
    let outputs = outputs(&["r0", "r1", "r2", "r3", "r4"]);
    let failures = sink
        .deliver(outputs.iter().enumerate().collect(), RETRY)
        .await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(state.lock().expect("the fault state").sent.clone(), [5, 2]);
    let mut stored = aws.stream_records("out").await;
    stored.sort();
    assert_eq!(
        stored,
        ["r0", "r1", "r2", "r3", "r4"],
        "each record exactly once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_record_is_sent_again_with_the_later_ones_of_its_key_in_order() {
    let moto = Moto::start();
    let (sink, state, aws) = sink_with_faults(&moto, &["a1"], 1).await;
    // Key `a`: a0 a1 a2 a3; key `b`: b0 b1. a1 is refused on the first call.
    let outputs = keyed(&["a0", "b0", "a1", "a2", "b1", "a3"], |t| &t[..1]);
    let failures = sink
        .deliver(outputs.iter().enumerate().collect(), RETRY)
        .await;
    assert!(failures.is_empty(), "{failures:?}");
    // a2 and a3 were taken on the first call, behind the refused a1: they go again,
    // after it, so the last copy of each record of key `a` is in order. Key `b` is
    // not sent twice.
    assert_eq!(state.lock().expect("the fault state").sent.clone(), [6, 3]);
    let stored = aws.stream_records("out").await;
    assert_eq!(stored, ["a0", "b0", "a2", "b1", "a3", "a1", "a2", "a3"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_the_last_attempt_what_the_service_took_counts_as_delivered() {
    let moto = Moto::start();
    let (sink, _, aws) = sink_with_faults(&moto, &["a1"], usize::MAX).await;
    let outputs = keyed(&["a0", "a1", "a2"], |t| &t[..1]);
    let once = RetryPolicy {
        max_attempts: 1,
        ..RETRY
    };
    let failures = sink
        .deliver(outputs.iter().enumerate().collect(), once)
        .await;
    // a2 went out behind the refused a1; with no attempt left it is not failed too.
    assert_eq!(failures.iter().map(|f| f.item).collect::<Vec<_>>(), [1]);
    assert_eq!(aws.stream_records("out").await, ["a0", "a2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_that_keeps_failing_is_given_up_with_the_reason() {
    let moto = Moto::start();
    let (sink, state, aws) = sink_with_faults(&moto, &["r2"], usize::MAX).await;
    let outputs = outputs(&["r0", "r1", "r2"]);
    let failures = sink
        .deliver(outputs.iter().enumerate().collect(), RETRY)
        .await;
    assert_eq!(failures.len(), 1);
    assert_eq!(
        (failures[0].item, failures[0].kind),
        (2, FailureKind::Delivery)
    );
    assert!(
        failures[0]
            .message
            .contains("ProvisionedThroughputExceededException"),
        "{}",
        failures[0].message
    );
    assert_eq!(
        state.lock().expect("the fault state").sent.clone(),
        [3, 1, 1]
    );
    assert_eq!(aws.stream_records("out").await.len(), 2);
}
