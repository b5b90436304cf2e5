//! Output rows compared across engines: an order-free fingerprint of every
//! row's values, read back from the CSV or Parquet files.
//!
//! Values are compared as text, numbers by value (`49.90` = `49.9`, DuckDB's
//! DECIMAL against our Float64). `occurred_at` is left out: DuckDB passes it
//! through as a string, materializer as a timestamp in its own format.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};

/// The columns compared, in this order.
pub const COLUMNS: [&str; 10] = [
    "article_id",
    "brand",
    "model",
    "version",
    "available_qty",
    "price_amount",
    "currency",
    "size",
    "qty",
    "eid",
];

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Fingerprint {
    pub rows: u64,
    pub hash: u64,
    xor: u64,
}

impl Fingerprint {
    fn add(&mut self, values: &[Option<&str>]) {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for value in values {
            normalize(*value).hash(&mut hasher);
        }
        let h = hasher.finish();
        self.rows += 1;
        self.hash = self.hash.wrapping_add(h);
        self.xor ^= h.rotate_left(17);
    }
}

fn normalize(value: Option<&str>) -> String {
    match value {
        None | Some("") => "\u{0}NULL".to_string(),
        Some(text) => match text.parse::<f64>() {
            Ok(number)
                if text
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b"-+.eE".contains(&b)) =>
            {
                format!("{number}")
            }
            _ => text.to_string(),
        },
    }
}

/// The fingerprint of every row of `files`.
pub fn fingerprint_files(files: &[PathBuf], parquet: bool) -> Result<Fingerprint, String> {
    let mut print = Fingerprint::default();
    for path in files {
        let path = path.as_path();
        let batches = if parquet {
            read_parquet(path)?
        } else {
            read_csv(path)?
        };
        for batch in batches {
            let batch = batch.map_err(|e| format!("{}: {e}", path.display()))?;
            add_batch(&mut print, &batch, path)?;
        }
    }
    Ok(print)
}

fn add_batch(print: &mut Fingerprint, batch: &RecordBatch, path: &Path) -> Result<(), String> {
    let mut columns = Vec::new();
    for name in COLUMNS {
        let index = batch
            .schema()
            .index_of(name)
            .map_err(|_| format!("{}: no column {name}", path.display()))?;
        let text = arrow::compute::cast(batch.column(index), &DataType::Utf8)
            .map_err(|e| e.to_string())?;
        columns.push(text);
    }
    let strings: Vec<_> = columns.iter().map(|c| c.as_string::<i32>()).collect();
    let mut values = Vec::with_capacity(COLUMNS.len());
    for row in 0..batch.num_rows() {
        values.clear();
        values.extend(
            strings
                .iter()
                .map(|c| (!c.is_null(row)).then(|| c.value(row))),
        );
        print.add(&values);
    }
    Ok(())
}

/// Batches of a file, read one at a time (the benchmark's own memory stays
/// small beside the processes it measures).
type Batches = Box<dyn Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>>>;

fn read_csv(path: &Path) -> Result<Batches, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut header = String::new();
    std::io::BufRead::read_line(&mut reader, &mut header).map_err(|e| e.to_string())?;
    let fields: Vec<Field> = header
        .trim_end()
        .split(',')
        .map(|name| Field::new(name.trim_matches('"'), DataType::Utf8, true))
        .collect();
    let csv = arrow_csv::ReaderBuilder::new(Arc::new(Schema::new(fields)))
        .with_header(false)
        .with_batch_size(65_536)
        .build(reader)
        .map_err(|e| e.to_string())?;
    Ok(Box::new(csv))
}

fn read_parquet(path: &Path) -> Result<Batches, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Box::new(reader))
}

/// The expected rows, computed independently with serde_json: every event
/// flattened, and the highest version per article flattened.
pub struct Reference {
    pub flattened: Fingerprint,
    pub compacted: Fingerprint,
}

pub fn reference(ndjson: &Path) -> Result<Reference, String> {
    // Two streaming passes, so that ten million events fit in memory: the
    // first flattens every event and finds each article's latest version
    // (the first arrival among equals), the second flattens those.
    let mut flattened = Fingerprint::default();
    let mut latest: HashMap<i64, (Option<i64>, usize)> = HashMap::new();
    for_each_event(ndjson, |n, event| {
        add_event(&mut flattened, &event);
        let id = event["article_id"].as_i64().unwrap_or_default();
        let version = event["version"].as_i64();
        let newer = latest.get(&id).is_none_or(|(old, _)| *old < version);
        if newer {
            latest.insert(id, (version, n));
        }
    })?;
    let chosen: std::collections::HashSet<usize> = latest.values().map(|(_, n)| *n).collect();
    drop(latest);
    let mut compacted = Fingerprint::default();
    for_each_event(ndjson, |n, event| {
        if chosen.contains(&n) {
            add_event(&mut compacted, &event);
        }
    })?;
    Ok(Reference {
        flattened,
        compacted,
    })
}

fn for_each_event(
    ndjson: &Path,
    mut f: impl FnMut(usize, serde_json::Value),
) -> Result<(), String> {
    use std::io::BufRead;
    let file = std::fs::File::open(ndjson).map_err(|e| format!("{}: {e}", ndjson.display()))?;
    for (n, line) in std::io::BufReader::with_capacity(1 << 20, file)
        .lines()
        .enumerate()
    {
        let line = line.map_err(|e| format!("{}: {e}", ndjson.display()))?;
        let event: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| format!("{} line {}: {e}", ndjson.display(), n + 1))?;
        f(n, event);
    }
    Ok(())
}

fn add_event(print: &mut Fingerprint, event: &serde_json::Value) {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    };
    let Some(sizes) = event["sizes"].as_array() else {
        return;
    };
    for size in sizes {
        let values = [
            text(&event["article_id"]),
            text(&event["brand"]),
            text(&event["model"]),
            text(&event["version"]),
            text(&event["available_qty"]),
            text(&event["price"]["amount"]),
            text(&event["price"]["currency"]),
            text(&size["size"]),
            text(&size["qty"]),
            text(&event["metadata"]["eid"]),
        ];
        let borrowed: Vec<Option<&str>> = values.iter().map(|v| v.as_deref()).collect();
        print.add(&borrowed);
    }
}
