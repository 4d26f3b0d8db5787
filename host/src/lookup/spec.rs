//! Where a logical lookup table lives, as the operator writes it in `PIPELINE_LOOKUPS`
//! (`users=dynamodb://users-table`, `prices=s3://bucket/prices.parquet#sku`) or
//! `host run --lookup` (also `file://users.jsonl#id`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The key column of an object table when the spec names none.
pub const DEFAULT_KEY_COLUMN: &str = "id";

/// A logical table name: 1 to 64 letters, digits or `-_.` (it names metrics and
/// manifest entries).
pub fn check_table_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "lookup table name {name:?}: 1 to 64 letters, digits or `-_.`"
        ))
    }
}

/// `NAME=SPEC` entries from a setting split at every comma: a piece that does not
/// start a new `NAME=SCHEME://` belongs to the one before (`?fields=a,b`, a URL's
/// query).
pub fn join_specs(pieces: &[String]) -> Vec<String> {
    let starts_entry = |piece: &str| {
        piece.split_once('=').is_some_and(|(name, rest)| {
            check_table_name(name.trim()).is_ok()
                && rest.split_once("://").is_some_and(|(scheme, _)| {
                    !scheme.is_empty()
                        && scheme
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                })
        })
    };
    let mut entries: Vec<String> = Vec::new();
    for piece in pieces {
        match entries.last_mut() {
            Some(last) if !starts_entry(piece) => {
                last.push(',');
                last.push_str(piece);
            }
            _ => entries.push(piece.clone()),
        }
    }
    entries
}

/// One table's backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableSpec {
    /// A DynamoDB table keyed by its partition key alone, read with `BatchGetItem`;
    /// `fields`, when given, is the projection (the key is always read too).
    Dynamodb {
        /// The table's name.
        table: String,
        /// Attributes to read; empty: all.
        fields: Vec<String>,
    },
    /// An S3 object holding the whole table, loaded once and refreshed by ETag.
    S3 {
        /// The bucket.
        bucket: String,
        /// The object's key.
        key: String,
        /// The column whose value is a row's key.
        column: String,
        /// How the object is written.
        format: TableFormat,
    },
    /// A local file holding the whole table (`host run`), reread when it changes.
    File {
        /// The file.
        path: PathBuf,
        /// The column whose value is a row's key.
        column: String,
        /// How the file is written.
        format: TableFormat,
    },
    /// An HTTP GET per key: the operator's URL with `{key}` replaced by the key,
    /// percent-encoded. The plugin chooses only the key: no other URL is ever fetched.
    Http {
        /// `http(s)://HOST/PATH` with `{key}` somewhere after the host.
        template: String,
    },
}

/// How an object table is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// One JSON object per line.
    JsonLines,
    /// A header line naming the columns, then one row per line (values as text).
    Csv,
    /// Apache Parquet.
    Parquet,
}

/// A table spec that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{spec:?}: {reason}")]
pub struct TableSpecError {
    spec: String,
    reason: String,
}

impl FromStr for TableSpec {
    type Err = TableSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let refuse = |reason: &str| TableSpecError {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = spec.split_once("://").ok_or_else(|| {
            refuse("expected dynamodb://TABLE, s3://BUCKET/KEY[#COLUMN], file://PATH[#COLUMN] or an http(s):// URL with {key}")
        })?;
        match scheme {
            "dynamodb" => {
                let (table, query) = split_query(rest);
                if table.is_empty() || table.contains('/') {
                    return Err(refuse("expected dynamodb://TABLE"));
                }
                let mut fields = Vec::new();
                for (name, value) in query {
                    match name {
                        "fields" => fields = value.split(',').map(str::to_owned).collect(),
                        other => {
                            return Err(refuse(&format!(
                                "unknown option `{other}` (`fields=a,b`)"
                            )));
                        }
                    }
                }
                if fields.iter().any(String::is_empty) {
                    return Err(refuse("an empty field name in `fields`"));
                }
                Ok(Self::Dynamodb {
                    table: table.to_owned(),
                    fields,
                })
            }
            "s3" | "file" => {
                let (location, column) = match rest.rsplit_once('#') {
                    Some((location, column)) if !column.is_empty() => (location, column),
                    Some(_) => return Err(refuse("an empty key column after `#`")),
                    None => (rest, DEFAULT_KEY_COLUMN),
                };
                let (location, query) = split_query(location);
                let mut format = None;
                for (name, value) in query {
                    match (name, value) {
                        ("format", "jsonl" | "json") => format = Some(TableFormat::JsonLines),
                        ("format", "csv") => format = Some(TableFormat::Csv),
                        ("format", "parquet") => format = Some(TableFormat::Parquet),
                        ("format", other) => {
                            return Err(refuse(&format!(
                                "format `{other}`: jsonl, csv or parquet"
                            )));
                        }
                        (other, _) => {
                            return Err(refuse(&format!("unknown option `{other}` (`format=`)")));
                        }
                    }
                }
                let format = format.unwrap_or_else(|| format_of(location));
                let column = column.to_owned();
                if scheme == "file" {
                    if location.is_empty() {
                        return Err(refuse("expected file://PATH"));
                    }
                    return Ok(Self::File {
                        path: PathBuf::from(location),
                        column,
                        format,
                    });
                }
                match location.split_once('/') {
                    Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(Self::S3 {
                        bucket: bucket.to_owned(),
                        key: key.to_owned(),
                        column,
                        format,
                    }),
                    _ => Err(refuse("expected s3://BUCKET/KEY")),
                }
            }
            "http" | "https" => {
                let host_end = rest.find('/').unwrap_or(rest.len());
                if host_end == 0 || rest[..host_end].contains('{') {
                    return Err(refuse(
                        "the URL's host must be written out: `{key}` goes in its path or query",
                    ));
                }
                if !rest[host_end..].contains("{key}") {
                    return Err(refuse(
                        "an HTTP table's URL needs `{key}` where the key goes",
                    ));
                }
                Ok(Self::Http {
                    template: spec.to_owned(),
                })
            }
            other => Err(refuse(&format!(
                "unknown scheme `{other}`: dynamodb, s3, file, http or https"
            ))),
        }
    }
}

/// `rest` without its `?query`, and the query's `name=value` pairs.
fn split_query(rest: &str) -> (&str, Vec<(&str, &str)>) {
    match rest.split_once('?') {
        None => (rest, Vec::new()),
        Some((location, query)) => (
            location,
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').unwrap_or((p, "")))
                .collect(),
        ),
    }
}

/// The format a file name says: `.parquet`, `.csv`, else JSON lines.
fn format_of(location: &str) -> TableFormat {
    let lower = location.to_ascii_lowercase();
    if lower.ends_with(".parquet") {
        TableFormat::Parquet
    } else if lower.ends_with(".csv") {
        TableFormat::Csv
    } else {
        TableFormat::JsonLines
    }
}

impl fmt::Display for TableSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dynamodb { table, fields } if fields.is_empty() => {
                write!(f, "dynamodb://{table}")
            }
            Self::Dynamodb { table, fields } => {
                write!(f, "dynamodb://{table}?fields={}", fields.join(","))
            }
            Self::S3 {
                bucket,
                key,
                column,
                ..
            } => write!(f, "s3://{bucket}/{key}#{column}"),
            Self::File { path, column, .. } => write!(f, "file://{}#{column}", path.display()),
            Self::Http { template } => f.write_str(template),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_backend_parses_with_its_options() {
        assert_eq!(
            "dynamodb://users?fields=name,segment".parse(),
            Ok(TableSpec::Dynamodb {
                table: "users".into(),
                fields: vec!["name".into(), "segment".into()],
            })
        );
        assert_eq!(
            "s3://ref/prices.parquet#sku".parse(),
            Ok(TableSpec::S3 {
                bucket: "ref".into(),
                key: "prices.parquet".into(),
                column: "sku".into(),
                format: TableFormat::Parquet,
            })
        );
        assert_eq!(
            "file://users.csv".parse(),
            Ok(TableSpec::File {
                path: "users.csv".into(),
                column: DEFAULT_KEY_COLUMN.into(),
                format: TableFormat::Csv,
            })
        );
        assert_eq!(
            "s3://ref/t.txt?format=jsonl#k"
                .parse::<TableSpec>()
                .map(|s| s.to_string()),
            Ok("s3://ref/t.txt#k".to_owned())
        );
        assert!(matches!(
            "https://api.example/users/{key}?v=1".parse(),
            Ok(TableSpec::Http { .. })
        ));
    }

    #[test]
    fn a_setting_split_at_commas_is_joined_back_into_its_entries() {
        let pieces: Vec<String> =
            "users=dynamodb://u?fields=a,b,prices=s3://r/p.csv#sku,geo=https://g/{key}?x=1,2"
                .split(',')
                .map(str::to_owned)
                .collect();
        assert_eq!(
            join_specs(&pieces),
            [
                "users=dynamodb://u?fields=a,b",
                "prices=s3://r/p.csv#sku",
                "geo=https://g/{key}?x=1,2"
            ]
        );
        assert!(check_table_name("users.v2").is_ok());
        assert!(check_table_name("a b").is_err());
    }

    #[test]
    fn specs_that_cannot_work_are_refused_naming_why() {
        for (spec, why) in [
            ("users", "expected"),
            ("dynamodb://", "dynamodb://TABLE"),
            ("dynamodb://t?projection=a", "unknown option"),
            ("s3://bucket", "s3://BUCKET/KEY"),
            ("s3://b/k#", "empty key column"),
            ("s3://b/k?format=xml", "format `xml`"),
            ("https://api.example/users", "{key}"),
            ("https://{key}.example/", "host must be written out"),
            ("ftp://x/y", "unknown scheme"),
        ] {
            let error = spec.parse::<TableSpec>().expect_err(spec).to_string();
            assert!(error.contains(why), "{spec}: {error}");
        }
    }
}
