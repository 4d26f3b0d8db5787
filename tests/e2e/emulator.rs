//! The local AWS emulator (moto's server, installed into `.venv` by `./dev test`) and
//! SDK clients pointed at it. Each test starts its own emulator on a free loopback port
//! and stops it (by PID) when done. If it cannot start, the test fails loudly.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::Credentials;

pub struct Moto {
    child: Child,
    pub endpoint: String,
    /// Where the emulator's stderr goes.
    log: PathBuf,
}

impl Moto {
    pub fn start() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let (bin, server) = (
            root.join(".venv/bin/python"),
            root.join("tests/e2e/moto_server.py"),
        );
        let installed = root.join(".venv/bin/moto_server");
        assert!(
            installed.exists(),
            "{} is missing: run `./dev test`, which installs moto into .venv",
            installed.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        // moto's server, with a fix for a race of its own (see the script). Its log (a
        // line per request) goes to a file, shown if it does not start.
        let log = std::env::temp_dir().join(format!("moto-{port}.log"));
        let stderr = std::fs::File::create(&log).expect("the emulator's log file");
        let child = Command::new(&bin)
            .arg(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                let said = std::fs::read_to_string(&moto.log).unwrap_or_default();
                panic!("moto_server exited at start: {status}\n{said}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "moto_server did not listen on {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    /// The environment that points the host binary at this emulator.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("PIPELINE_S3_PATH_STYLE", "true".into()),
        ]
    }

    pub async fn clients(&self) -> Clients {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .load()
            .await;
        let s3 = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build();
        Clients {
            s3: aws_sdk_s3::Client::from_conf(s3),
            kinesis: aws_sdk_kinesis::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            glue: aws_sdk_glue::Client::new(&config),
            secrets: aws_sdk_secretsmanager::Client::new(&config),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

pub struct Clients {
    pub s3: aws_sdk_s3::Client,
    pub kinesis: aws_sdk_kinesis::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub glue: aws_sdk_glue::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl Clients {
    pub async fn bucket(&self, name: &str) {
        self.s3
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .expect("create bucket");
    }

    /// An idempotency store's table, as `infra/template.yaml` makes it: key `id`, TTL on
    /// `ttl`.
    pub async fn table(&self, name: &str) {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
            TimeToLiveSpecification,
        };
        self.dynamodb
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("attribute"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(KeyType::Hash)
                    .build()
                    .expect("key"),
            )
            .send()
            .await
            .expect("create table");
        self.dynamodb
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("ttl")
                    .enabled(true)
                    .build()
                    .expect("ttl"),
            )
            .send()
            .await
            .expect("ttl on");
    }

    pub async fn put_object(&self, bucket: &str, key: &str, body: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .expect("put object");
    }

    pub async fn stream(&self, name: &str) {
        self.kinesis
            .create_stream()
            .stream_name(name)
            .shard_count(1)
            .send()
            .await
            .expect("create stream");
    }

    pub async fn queue(&self, name: &str) -> String {
        let mut request = self.sqs.create_queue().queue_name(name);
        if name.ends_with(".fifo") {
            request = request.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
        }
        request
            .send()
            .await
            .expect("create queue")
            .queue_url()
            .expect("url")
            .to_owned()
    }

    /// Every record in the stream's first shard, as text.
    pub async fn stream_records(&self, stream: &str) -> Vec<String> {
        self.stream_data(stream)
            .await
            .into_iter()
            .map(|(_, data)| String::from_utf8_lossy(&data).into_owned())
            .collect()
    }

    /// The records of a one-shard stream, in order: partition key and data.
    pub async fn stream_data(&self, stream: &str) -> Vec<(String, Vec<u8>)> {
        let shards = self
            .kinesis
            .list_shards()
            .stream_name(stream)
            .send()
            .await
            .expect("shards");
        let shard = shards.shards()[0].shard_id().to_owned();
        let iterator = self
            .kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard)
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("iterator");
        let records = self
            .kinesis
            .get_records()
            .shard_iterator(iterator.shard_iterator().expect("iterator"))
            .limit(10_000)
            .send()
            .await
            .expect("records");
        records
            .records()
            .iter()
            .map(|r| {
                (
                    r.partition_key().unwrap_or_default().to_owned(),
                    r.data().as_ref().to_vec(),
                )
            })
            .collect()
    }

    /// Every message in the queue (received and deleted), as bodies.
    pub async fn drain_queue(&self, url: &str) -> Vec<String> {
        self.drain(url, false).await
    }

    /// Every message in the queue (received and deleted), as the payloads sent: a body
    /// the host sent as base64 (its `content-transfer-encoding` attribute) decoded.
    pub async fn drain_payloads(&self, url: &str) -> Vec<String> {
        self.drain(url, true).await
    }

    /// Every message in the queue (received and deleted), as the bytes sent (a base64
    /// body decoded).
    pub async fn drain_payloads_bytes(&self, url: &str) -> Vec<Vec<u8>> {
        self.drain_messages(url)
            .await
            .into_iter()
            .map(|(body, base64)| {
                if base64 {
                    decode_base64(&body)
                } else {
                    body.into_bytes()
                }
            })
            .collect()
    }

    async fn drain(&self, url: &str, decode: bool) -> Vec<String> {
        self.drain_messages(url)
            .await
            .into_iter()
            .map(|(body, base64)| {
                if decode && base64 {
                    String::from_utf8(decode_base64(&body)).expect("a text payload")
                } else {
                    body
                }
            })
            .collect()
    }

    /// Every message in the queue, received and deleted: its body, and whether the host
    /// sent it as base64 (its `content-transfer-encoding` attribute).
    async fn drain_messages(&self, url: &str) -> Vec<(String, bool)> {
        let mut messages = Vec::new();
        loop {
            let response = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .send()
                .await
                .expect("receive");
            if response.messages().is_empty() {
                return messages;
            }
            for m in response.messages() {
                let base64 = m
                    .message_attributes()
                    .and_then(|a| a.get("content-transfer-encoding"))
                    .and_then(|v| v.string_value())
                    == Some("base64");
                messages.push((m.body().expect("an SQS message body").to_owned(), base64));
                if let Some(handle) = m.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .expect("delete");
                }
            }
        }
    }

    /// Keys and bodies of every object under `prefix`.
    pub async fn objects(&self, bucket: &str, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let listed = self
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .send()
            .await
            .expect("list");
        let mut objects = Vec::new();
        for object in listed.contents() {
            let key = object.key().expect("a listed S3 object's key").to_owned();
            let body = self
                .s3
                .get_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .expect("get");
            objects.push((
                key,
                body.body
                    .collect()
                    .await
                    .expect("body")
                    .into_bytes()
                    .to_vec(),
            ));
        }
        objects
    }
}

fn decode_base64(body: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("a base64 body")
}
