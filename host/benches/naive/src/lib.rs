//! Echo over the naive encoding: each input record becomes one output, unchanged.

#[allow(missing_docs, clippy::all, unsafe_op_in_unsafe_fn)]
mod bindings {
    wit_bindgen::generate!({ path: "naive.wit", world: "naive-echo" });
}

use bindings::{Guest, InputRecord, OutputRecord};

// The guest SDK's allocator, as the packed echo has it: the comparison is then between
// the encodings alone. (Its source, not the SDK crate: the SDK would bring its own WIT.)
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[path = "../../../../guest-sdk/src/alloc.rs"]
mod alloc;

#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: alloc::SizeClasses = alloc::SizeClasses::new();

struct Echo;

impl Guest for Echo {
    fn transform(batch: Vec<InputRecord>) -> Vec<Result<Vec<OutputRecord>, String>> {
        batch
            .into_iter()
            .map(|r| {
                // Like the packed echo (`host/benches/echo`): no work but the copy.
                Ok(vec![OutputRecord {
                    payload: r.payload,
                    key: r.key,
                    destination: None,
                    attributes: Vec::new(),
                }])
            })
            .collect()
    }
}

bindings::export!(Echo with_types_in bindings);
