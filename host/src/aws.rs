//! AWS clients, built once per process from the standard AWS configuration
//! (environment, profile, instance role). `AWS_ENDPOINT_URL` points every client at
//! another endpoint (a local emulator); `PIPELINE_S3_PATH_STYLE=true` makes S3 use
//! path-style addressing, which emulators need.

use aws_config::BehaviorVersion;

/// The clients the host's sources, sinks and dead-letter queues use.
#[derive(Clone, Debug)]
pub struct AwsClients {
    /// S3: objects to read, JSON-lines outputs, dead-letter objects.
    pub s3: aws_sdk_s3::Client,
    /// Kinesis Data Streams: `PutRecords` outputs.
    pub kinesis: aws_sdk_kinesis::Client,
    /// SQS: `SendMessageBatch` outputs and the dead-letter queue.
    pub sqs: aws_sdk_sqs::Client,
}

impl AwsClients {
    /// Loads the AWS configuration from the environment and builds the clients.
    pub async fn from_env() -> Self {
        let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let path_style =
            std::env::var("PIPELINE_S3_PATH_STYLE").is_ok_and(|v| v == "true" || v == "1");
        let s3 = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(path_style)
            .build();
        Self {
            s3: aws_sdk_s3::Client::from_conf(s3),
            kinesis: aws_sdk_kinesis::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
        }
    }
}

impl AwsClients {
    /// The whole body of `s3://bucket/key`; the error names the object.
    pub async fn object_bytes(&self, bucket: &str, key: &str) -> Result<bytes::Bytes, String> {
        let object = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| format!("s3://{bucket}/{key}: {}", describe_error(&e)))?;
        let body = object
            .body
            .collect()
            .await
            .map_err(|e| format!("s3://{bucket}/{key}: reading: {e}"))?;
        Ok(body.into_bytes())
    }
}

/// An AWS SDK error with its service message, in one line.
pub fn describe_error<E: std::error::Error + 'static>(error: &E) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
