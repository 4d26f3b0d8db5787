//! An in-process sink that answers each call as its script says: take every entry,
//! refuse some, fail the whole call, or stall. It runs the same retry loop the AWS sinks
//! run ([`super::send_with_retries`]), so the delivery rules (what is retried, what the
//! service took, per-key order, hand-backs and the DLQ) can be unit-tested in
//! milliseconds; the end-to-end tests keep the wiring to the real services.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::{DeliveryFailure, RetryPolicy, send_with_retries};
use crate::record::Output;

/// How the sink answers one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Every entry taken.
    TakeAll,
    /// The entries at these positions in the call refused, the others taken.
    Refuse(Vec<usize>),
    /// The whole call failed with this reason; nothing taken.
    Fail(String),
    /// No answer for this long, then the call fails; nothing taken.
    Stall(Duration),
}

/// A scripted sink. Clones share their script and what they saw.
#[derive(Debug, Clone)]
pub struct ScriptedSink {
    per_call: usize,
    state: Arc<Mutex<Script>>,
}

#[derive(Debug, Default)]
struct Script {
    /// The answers still to give, in call order; past them every call takes all.
    answers: VecDeque<Answer>,
    /// Each call's entries (their payloads, as text).
    calls: Vec<Vec<String>>,
    /// Every entry taken, in order.
    taken: Vec<String>,
}

/// One output as the scripted sink sends it.
#[derive(Debug, Clone)]
struct Entry {
    item: usize,
    payload: String,
    key: Option<String>,
}

impl ScriptedSink {
    /// A sink sending at most `per_call` entries a call, answering calls with `answers`.
    pub fn new(per_call: usize, answers: impl IntoIterator<Item = Answer>) -> Self {
        Self {
            per_call: per_call.max(1),
            state: Arc::new(Mutex::new(Script {
                answers: answers.into_iter().collect(),
                ..Script::default()
            })),
        }
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Each call's entries (their payloads, as text), in call order.
    pub fn calls(&self) -> Vec<Vec<String>> {
        self.script().calls.clone()
    }

    /// Every entry taken (its payload, as text), in the order taken.
    pub fn taken(&self) -> Vec<String> {
        self.script().taken.clone()
    }

    /// Sends `outputs` through the retry loop; returns what could not be delivered.
    pub async fn deliver(
        &self,
        outputs: Vec<(usize, &Output)>,
        retry: RetryPolicy,
    ) -> Vec<DeliveryFailure> {
        let pending: Vec<Entry> = outputs
            .into_iter()
            .map(|(item, output)| Entry {
                item,
                payload: String::from_utf8_lossy(&output.payload).into_owned(),
                key: output
                    .key
                    .as_ref()
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
            })
            .collect();
        let per_call = self.per_call;
        let pack = |entries: &[Entry]| -> Vec<Range<usize>> {
            (0..entries.len())
                .step_by(per_call)
                .map(|start| start..(start + per_call).min(entries.len()))
                .collect()
        };
        let send = async |chunk: &[Entry]| {
            let answer = {
                let mut script = self.script();
                script
                    .calls
                    .push(chunk.iter().map(|e| e.payload.clone()).collect());
                script.answers.pop_front().unwrap_or(Answer::TakeAll)
            };
            let refused: Vec<usize> = match answer {
                Answer::TakeAll => Vec::new(),
                Answer::Refuse(positions) => positions,
                Answer::Fail(reason) => return Err(reason),
                Answer::Stall(time) => {
                    tokio::time::sleep(time).await;
                    return Err(format!("stalled for {time:?}"));
                }
            };
            let mut script = self.script();
            for (position, entry) in chunk.iter().enumerate() {
                if !refused.contains(&position) {
                    script.taken.push(entry.payload.clone());
                }
            }
            Ok(refused
                .into_iter()
                .map(|position| (position, "refused by the script".to_owned()))
                .collect())
        };
        let left = send_with_retries(pending, retry, pack, |e| e.key.clone(), send).await;
        left.failures("scripted sink", retry, |e| e.item).collect()
    }
}
