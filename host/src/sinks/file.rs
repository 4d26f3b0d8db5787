//! Local files for `host run`: outputs and dead-letter entries as JSON lines,
//! written to a temporary file and renamed into place only when the run succeeds.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::value::RawValue;

use super::DeliveryFailure;
use crate::record::{FailureKind, Output};

/// A JSON-lines file (or stdout) as a sink. Shared by clones; committed once.
#[derive(Clone)]
pub struct FileSink {
    file: Arc<Mutex<Option<JsonLinesFile>>>,
    /// The first write error: the file takes nothing after it.
    broken: Arc<Mutex<Option<String>>>,
    emit: Emit,
    name: String,
    /// Written to `<name>.partial` and final only once committed (stdout is not).
    commits: bool,
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileSink({})", self.name)
    }
}

impl FileSink {
    /// Opens `target`; each output is written as `emit` says.
    pub fn create(target: &Target, emit: Emit) -> std::io::Result<Self> {
        let name = match target {
            Target::Stdout => "stdout".to_owned(),
            Target::File(path) => path.display().to_string(),
        };
        Ok(Self {
            file: Arc::new(Mutex::new(Some(JsonLinesFile::create(target)?))),
            broken: Arc::new(Mutex::new(None)),
            emit,
            name,
            commits: matches!(target, Target::File(_)),
        })
    }

    /// Whether what this sink took is final only once [`FileSink::commit`] moves it into
    /// place: until then a failed run removes it, so nothing in it may count as done.
    pub fn commits_at_finish(&self) -> bool {
        self.commits
    }

    /// Writes `outputs` in order; a write error fails the rest of them.
    pub fn deliver(&self, outputs: Vec<(usize, &Output)>) -> Vec<DeliveryFailure> {
        let mut guard = match self.file.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut failures = Vec::new();
        for (item, output) in outputs {
            let written = match guard.as_mut() {
                Some(file) => file.write_output(output, self.emit),
                None => Err(std::io::Error::other("already committed")),
            };
            if let Err(e) = written {
                let message = format!("cannot write {}: {e}", self.name);
                let mut broken = match self.broken.lock() {
                    Ok(guard) => guard,
                    Err(poisoned) => poisoned.into_inner(),
                };
                broken.get_or_insert_with(|| message.clone());
                failures.push(DeliveryFailure {
                    item,
                    kind: FailureKind::Delivery,
                    message,
                });
            }
        }
        failures
    }

    /// The first write error, if any.
    pub fn broken(&self) -> Option<String> {
        match self.broken.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Flushes and moves the file into place (once; later calls do nothing).
    pub fn commit(&self) -> std::io::Result<()> {
        let mut guard = match self.file.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        match guard.take() {
            Some(file) => file.commit(),
            None => Ok(()),
        }
    }
}

/// How `host run` writes each output record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    /// A JSON object per output: destination, key, attributes and payload (embedded
    /// as JSON when it is JSON, else as a string, else as `payload_base64`).
    Envelope,
    /// The payload bytes alone, one per line.
    Payload,
}

/// Where a writer goes: stdout, or a file that appears only when complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Standard output (streamed).
    Stdout,
    /// A file path.
    File(PathBuf),
}

/// A JSON-lines writer. A file target is written to `<name>.partial` and renamed on
/// [`JsonLinesFile::commit`]; dropped without commit, the partial file is removed.
pub struct JsonLinesFile {
    writer: BufWriter<Box<dyn Write + Send>>,
    paths: Option<(PathBuf, PathBuf)>,
}

impl JsonLinesFile {
    /// Opens `target` for writing.
    pub fn create(target: &Target) -> std::io::Result<Self> {
        let (writer, paths): (Box<dyn Write + Send>, _) = match target {
            Target::Stdout => (Box::new(std::io::stdout()), None),
            Target::File(path) => {
                let partial = partial_path(path);
                (
                    Box::new(File::create(&partial)?),
                    Some((partial, path.clone())),
                )
            }
        };
        Ok(Self {
            writer: BufWriter::with_capacity(1 << 16, writer),
            paths,
        })
    }

    /// Writes one line of raw bytes.
    pub fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(line)?;
        self.writer.write_all(b"\n")
    }

    /// Writes one value as a JSON line.
    pub fn write_json(&mut self, value: &impl Serialize) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.writer, value)?;
        self.writer.write_all(b"\n")
    }

    /// Writes one output record in the `emit` form.
    pub fn write_output(&mut self, output: &Output, emit: Emit) -> std::io::Result<()> {
        match emit {
            Emit::Payload => self.write_line(&output.payload),
            Emit::Envelope => self.write_json(&Envelope::new(output)),
        }
    }

    /// Flushes and, for a file, moves it into place.
    pub fn commit(mut self) -> std::io::Result<()> {
        self.writer.flush()?;
        if let Some((partial, path)) = self.paths.take() {
            std::fs::rename(partial, path)?;
        }
        Ok(())
    }
}

impl Drop for JsonLinesFile {
    fn drop(&mut self) {
        if let Some((partial, _)) = self.paths.take() {
            let _ = std::fs::remove_file(partial);
        }
    }
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

#[derive(Serialize)]
struct Envelope<'a> {
    destination: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<std::borrow::Cow<'a, str>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    attributes: BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Payload<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Payload<'a> {
    Json(&'a RawValue),
    Reformatted(serde_json::Value),
    Text(&'a str),
}

impl<'a> Envelope<'a> {
    fn new(output: &'a Output) -> Self {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let (payload, payload_base64) = match std::str::from_utf8(&output.payload) {
            Err(_) => (None, Some(b64(&output.payload))),
            Ok(text) => match serde_json::from_str::<&RawValue>(text) {
                // A JSON line must stay one line: re-serialize pretty-printed JSON.
                Ok(_) if text.contains('\n') => (
                    serde_json::from_str(text).ok().map(Payload::Reformatted),
                    None,
                ),
                Ok(raw) => (Some(Payload::Json(raw)), None),
                Err(_) => (Some(Payload::Text(text)), None),
            },
        };
        Self {
            destination: output.destination.as_deref(),
            key: output.key.as_ref().map(|k| String::from_utf8_lossy(k)),
            attributes: output
                .attributes
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            payload,
            payload_base64,
        }
    }
}
