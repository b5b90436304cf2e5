//! The first rows of a committed run's file, read back in the form the run
//! wrote it: CSV in the topic's dialect (compressed or not), Parquet, or the
//! NDJSON of rejected events. Reads are bounded: a text file's first
//! [`HEAD_BYTES`] only, a Parquet file up to [`PARQUET_BYTES`] (its footer
//! and row groups are needed to read any row).

use std::io::Read;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bytes::Bytes;
use datafusion::object_store::ObjectStoreExt;
use datafusion::object_store::path::Path;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use materializer_core::ErrorClass;
use materializer_core::config::{CsvOptions, Format, OutputSettings};
use materializer_core::sink::{FileKind, OutputLocation};

use crate::api::error::{ApiError, ProblemKind};

/// Bytes of a text file read for its first rows.
pub(crate) const HEAD_BYTES: u64 = 4 << 20;
/// Bytes of decompressed text looked at for its first rows.
const TEXT_BYTES: usize = 16 << 20;
/// The largest Parquet file previewed.
pub(crate) const PARQUET_BYTES: u64 = 64 << 20;

/// How a file is written.
pub(crate) enum FileForm {
    Csv(CsvOptions, Compression),
    Parquet,
    Ndjson,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

impl FileForm {
    /// The form of a file of `kind` at `path`, written with `output` (the
    /// run's shape, else the topic's settings now). The file's extension
    /// says the compression, whatever the settings say today.
    pub(crate) fn of(kind: FileKind, path: &str, output: &OutputSettings) -> FileForm {
        if kind == FileKind::Rejected {
            return FileForm::Ndjson;
        }
        if path.ends_with(".parquet")
            || (output.format == Format::Parquet && !path.contains(".csv"))
        {
            return FileForm::Parquet;
        }
        let compression = if path.ends_with(".gz") {
            Compression::Gzip
        } else if path.ends_with(".zst") {
            Compression::Zstd
        } else {
            Compression::None
        };
        FileForm::Csv(output.csv.clone(), compression)
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            FileForm::Csv(..) => "csv",
            FileForm::Parquet => "parquet",
            FileForm::Ndjson => "ndjson",
        }
    }
}

/// A file's first rows: its columns, the rows' values as text (`None` for
/// NULL), and whether there were more.
pub(crate) struct Head {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    pub more: bool,
}

fn unreadable(path: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::class(
        ErrorClass::SinkUnavailable,
        format!("cannot read {path} from the output location: {e}"),
    )
    .titled("File not readable")
}

/// The first `rows` rows of the file at `location` (`path` as the manifest has it).
pub(crate) async fn head(
    output: &OutputLocation,
    location: &Path,
    path: &str,
    bytes: u64,
    form: &FileForm,
    rows: usize,
) -> Result<Head, ApiError> {
    let store = Arc::clone(&output.store);
    match form {
        FileForm::Parquet => {
            if bytes > PARQUET_BYTES {
                return Err(ApiError::new(
                    ProblemKind::TooLarge,
                    format!(
                        "{path} has {bytes} bytes; Parquet files of up to {PARQUET_BYTES} bytes are previewed here: download it instead"
                    ),
                )
                .titled("Too large to preview"));
            }
            let data = store
                .get(location)
                .await
                .map_err(|e| unreadable(path, e))?
                .bytes()
                .await
                .map_err(|e| unreadable(path, e))?;
            parquet_head(data, rows).map_err(|e| unreadable(path, e))
        }
        FileForm::Csv(options, compression) => {
            let data = read_head(&store, location, path, bytes).await?;
            let text = decompress(&data, *compression, bytes > HEAD_BYTES)
                .map_err(|e| unreadable(path, e))?;
            Ok(csv_head(&text, options, rows, bytes > HEAD_BYTES))
        }
        FileForm::Ndjson => {
            let data = read_head(&store, location, path, bytes).await?;
            Ok(ndjson_head(
                &String::from_utf8_lossy(&data),
                rows,
                bytes > HEAD_BYTES,
            ))
        }
    }
}

async fn read_head(
    store: &Arc<dyn datafusion::object_store::ObjectStore>,
    location: &Path,
    path: &str,
    bytes: u64,
) -> Result<Bytes, ApiError> {
    if bytes == 0 {
        return Ok(Bytes::new());
    }
    store
        .get_range(location, 0..bytes.min(HEAD_BYTES))
        .await
        .map_err(|e| unreadable(path, e))
}

/// The text of a file's head; a compressed head cut short decompresses as
/// far as it goes.
fn decompress(data: &[u8], compression: Compression, cut: bool) -> std::io::Result<String> {
    let mut out = Vec::new();
    let read = match compression {
        Compression::None => {
            out.extend_from_slice(data);
            Ok(0)
        }
        Compression::Gzip => flate2::read::MultiGzDecoder::new(data)
            .take(TEXT_BYTES as u64)
            .read_to_end(&mut out),
        Compression::Zstd => zstd::stream::read::Decoder::new(data)?
            .take(TEXT_BYTES as u64)
            .read_to_end(&mut out),
    };
    match read {
        Ok(_) => {}
        // The head ends within the compressed stream: keep what it gave.
        Err(_) if cut => {}
        Err(e) => return Err(e),
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Rows of CSV text in the topic's dialect. The last row of a head that was
/// cut may be a part: it is left out.
fn csv_head(text: &str, options: &CsvOptions, rows: usize, cut: bool) -> Head {
    let mut records = parse_csv(text, options);
    if cut && !text.ends_with('\n') {
        records.pop();
    }
    let mut records = records.into_iter();
    let columns: Vec<String> = if options.header {
        records
            .next()
            .map(|r| r.into_iter().map(Option::unwrap_or_default).collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut shown: Vec<Vec<Option<String>>> = records.by_ref().take(rows).collect();
    let more = records.next().is_some() || cut;
    let width = shown.iter().map(Vec::len).max().unwrap_or(0);
    let columns = if columns.is_empty() {
        (1..=width).map(|i| format!("column {i}")).collect()
    } else {
        columns
    };
    for row in &mut shown {
        row.resize(columns.len().max(row.len()), None);
    }
    Head {
        columns,
        rows: shown,
        more,
    }
}

/// Parses CSV as the file writer writes it: fields split by the delimiter,
/// quoted with the quote (doubled inside, or after the escape), an unquoted
/// field equal to the NULL text is NULL.
fn parse_csv(text: &str, options: &CsvOptions) -> Vec<Vec<Option<String>>> {
    let (delimiter, quote, escape) = (options.delimiter, options.quote, options.escape);
    let mut records = Vec::new();
    let mut record: Vec<Option<String>> = Vec::new();
    let mut field = String::new();
    let (mut quoted, mut in_quotes, mut started) = (false, false, false);
    let mut chars = text.chars().peekable();
    let end_field = |field: &mut String, quoted: &mut bool, record: &mut Vec<Option<String>>| {
        let value = std::mem::take(field);
        record.push(if !*quoted && value == options.null {
            None
        } else {
            Some(value)
        });
        *quoted = false;
    };
    while let Some(c) = chars.next() {
        started = true;
        if in_quotes {
            if Some(c) == escape && escape != Some(quote) {
                if let Some(next) = chars.next() {
                    field.push(next);
                }
            } else if c == quote {
                if chars.peek() == Some(&quote) {
                    chars.next();
                    field.push(quote);
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        if c == quote {
            quoted = true;
            in_quotes = true;
        } else if c == delimiter {
            end_field(&mut field, &mut quoted, &mut record);
        } else if c == '\n' || c == '\r' {
            if c == '\r' && chars.peek() == Some(&'\n') {
                chars.next();
            }
            end_field(&mut field, &mut quoted, &mut record);
            records.push(std::mem::take(&mut record));
            started = false;
        } else {
            field.push(c);
        }
    }
    if started {
        end_field(&mut field, &mut quoted, &mut record);
        records.push(record);
    }
    records
}

/// Rows of NDJSON: one object per line, its fields as columns (in the order
/// they first appear).
fn ndjson_head(text: &str, rows: usize, cut: bool) -> Head {
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if cut && !text.ends_with('\n') {
        lines.pop();
    }
    let more = lines.len() > rows || cut;
    let objects: Vec<serde_json::Value> = lines
        .iter()
        .take(rows)
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|_| serde_json::json!({ "line": line.to_string() }))
        })
        .collect();
    let mut columns: Vec<String> = Vec::new();
    for object in &objects {
        if let Some(map) = object.as_object() {
            for key in map.keys() {
                if !columns.contains(key) {
                    columns.push(key.clone());
                }
            }
        }
    }
    let rows = objects
        .iter()
        .map(|object| {
            columns
                .iter()
                .map(|c| match object.get(c) {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                })
                .collect()
        })
        .collect();
    Head {
        columns,
        rows,
        more,
    }
}

fn parquet_head(data: Bytes, rows: usize) -> Result<Head, String> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(data).map_err(|e| e.to_string())?;
    let total = builder.metadata().file_metadata().num_rows().max(0) as usize;
    let columns: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let reader = builder
        .with_batch_size(rows.max(1))
        .with_limit(rows)
        .build()
        .map_err(|e| e.to_string())?;
    let mut shown = Vec::new();
    for batch in reader {
        let batch: RecordBatch = batch.map_err(|e| e.to_string())?;
        shown.extend(batch_rows(&batch)?);
        if shown.len() >= rows {
            break;
        }
    }
    shown.truncate(rows);
    Ok(Head {
        columns,
        more: total > shown.len(),
        rows: shown,
    })
}

/// A batch's rows as text, as Arrow displays its values.
fn batch_rows(batch: &RecordBatch) -> Result<Vec<Vec<Option<String>>>, String> {
    let options = FormatOptions::default();
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).map(|f| (c, f)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok((0..batch.num_rows())
        .map(|i| {
            formatters
                .iter()
                .map(|(column, f)| (!column.is_null(i)).then(|| f.value(i).to_string()))
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_keeps_null_apart_from_the_empty_string_and_quoted_line_breaks() {
        let options = CsvOptions::default();
        let head = csv_head(
            "a,b,c\n1,\"x, \"\"y\"\"\",\n2,\"\",\"two\nlines\"\n",
            &options,
            10,
            false,
        );
        assert_eq!(head.columns, ["a", "b", "c"]);
        assert_eq!(
            head.rows,
            vec![
                vec![Some("1".into()), Some("x, \"y\"".into()), None],
                vec![
                    Some("2".into()),
                    Some(String::new()),
                    Some("two\nlines".into())
                ],
            ]
        );
        assert!(!head.more);
    }

    #[test]
    fn a_cut_head_leaves_out_its_last_part() {
        let head = csv_head("a\n1\n2\n3", &CsvOptions::default(), 10, true);
        assert_eq!(head.rows.len(), 2);
        assert!(head.more);
        let head = csv_head("a\n1\n2\n3\n", &CsvOptions::default(), 2, false);
        assert_eq!(head.rows.len(), 2);
        assert!(head.more);
    }

    #[test]
    fn ndjson_fields_are_columns() {
        let head = ndjson_head(
            "{\"offset\":\"1\",\"reason\":\"r\"}\n{\"offset\":\"2\",\"event\":{\"a\":1}}\n",
            10,
            false,
        );
        assert_eq!(head.columns, ["offset", "reason", "event"]);
        assert_eq!(
            head.rows[1],
            vec![Some("2".into()), None, Some("{\"a\":1}".into())]
        );
    }
}
