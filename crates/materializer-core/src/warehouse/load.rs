//! The statements that load one committed run and merge it.

use std::fmt::Write as _;

use super::target::Target;
use super::{Dialect, WarehouseError};
use crate::commit::Manifest;
use crate::config::{CsvCompression, Format, Topic};
use crate::sink::FileKind;

/// Where the warehouse finds a run's files.
pub enum FilePlace<'a> {
    /// A local folder (the output location `file://` folder).
    Folder(&'a std::path::Path),
    /// The URL of the topic's folder in object storage (`s3://bucket/prefix/<topic>`).
    Url(&'a str),
}

/// The statements that load one committed run and merge it.
pub fn load_run_sql(
    topic: &Topic,
    dialect: Dialect,
    manifest: &Manifest,
    place: FilePlace<'_>,
) -> Result<String, WarehouseError> {
    let t = Target::new(topic, dialect)?;
    let mut sql = format!(
        "-- Load run {} of topic {} ({}).\n",
        manifest.sequence,
        topic.name(),
        dialect.name()
    );
    let staged: Vec<(FileKind, String)> = if topic.compaction().compact {
        t.staged_kinds()
            .into_iter()
            .zip(t.staging_tables())
            .collect()
    } else if dialect == Dialect::Oracle {
        vec![(FileKind::Main, t.table("events_files"))]
    } else {
        vec![(FileKind::Main, t.table("events"))]
    };
    match dialect {
        Dialect::Postgres => postgres(&t, manifest, place, &staged, &mut sql)?,
        Dialect::Redshift => redshift(&t, manifest, place, &staged, &mut sql)?,
        Dialect::Oracle => oracle(&t, manifest, &staged, &mut sql),
    }
    Ok(sql)
}

fn unsupported(topic: &Topic, message: &str) -> WarehouseError {
    WarehouseError::Unsupported {
        topic: topic.name().to_string(),
        message: message.into(),
    }
}

fn postgres(
    t: &Target<'_>,
    manifest: &Manifest,
    place: FilePlace<'_>,
    staged: &[(FileKind, String)],
    sql: &mut String,
) -> Result<(), WarehouseError> {
    let FilePlace::Folder(folder) = place else {
        return Err(unsupported(
            t.topic,
            "the PostgreSQL load script reads the run's files from a local folder; give the output \
             folder (download the files of an S3 output first)",
        ));
    };
    if t.topic.output().format != Format::Csv {
        return Err(unsupported(
            t.topic,
            "PostgreSQL loads CSV files; this topic writes Parquet",
        ));
    }
    sql.push_str("BEGIN;\n");
    for (kind, table) in staged {
        for file in manifest.files.iter().filter(|f| f.kind == *kind) {
            sql.push_str(&postgres_copy(t.topic, table, &folder.join(&file.path)));
        }
    }
    let seq = manifest.sequence;
    let _ = writeln!(sql, "SELECT {}({seq});\nCOMMIT;", t.table("merge"));
    Ok(())
}

fn redshift(
    t: &Target<'_>,
    manifest: &Manifest,
    place: FilePlace<'_>,
    staged: &[(FileKind, String)],
    sql: &mut String,
) -> Result<(), WarehouseError> {
    let FilePlace::Url(base) = place else {
        return Err(unsupported(
            t.topic,
            "Redshift loads from S3; give the topic's S3 URL",
        ));
    };
    let csv = &t.topic.output().csv;
    let format = match t.topic.output().format {
        Format::Parquet => "FORMAT AS PARQUET".to_string(),
        Format::Csv => format!(
            "CSV DELIMITER '{}' QUOTE '{}'{}{} TIMEFORMAT 'auto' DATEFORMAT 'auto'{}",
            csv.delimiter,
            csv.quote,
            if csv.header { " IGNOREHEADER 1" } else { "" },
            if csv.null.is_empty() {
                String::new()
            } else {
                format!(" NULL AS '{}'", csv.null.replace('\'', "''"))
            },
            match csv.compression {
                CsvCompression::None => "",
                CsvCompression::Gzip => " GZIP",
                CsvCompression::Zstd => " ZSTD",
            }
        ),
    };
    let seq = manifest.sequence;
    sql.push_str("-- Change: the IAM role.\nBEGIN;\n");
    let compact = t.topic.compaction().compact;
    if compact {
        for (_, table) in staged {
            let _ = writeln!(sql, "DELETE FROM {table};");
        }
    }
    for (kind, table) in staged {
        if !manifest.files.iter().any(|f| f.kind == *kind) {
            continue;
        }
        let _ = writeln!(
            sql,
            "COPY {table} FROM '{base}/_redshift/{}-{seq:010}.json'\n  IAM_ROLE '<your-role-arn>' MANIFEST {format};",
            kind.as_str()
        );
    }
    if compact {
        for statement in t.merge_statements() {
            let _ = writeln!(sql, "{statement};");
        }
    }
    let _ = writeln!(
        sql,
        "INSERT INTO {} (sequence) VALUES ({seq});\nCOMMIT;",
        t.table("loaded_runs")
    );
    Ok(())
}

fn oracle(t: &Target<'_>, manifest: &Manifest, staged: &[(FileKind, String)], sql: &mut String) {
    let seq = manifest.sequence;
    for (kind, table) in staged {
        let locations: Vec<String> = manifest
            .files
            .iter()
            .filter(|f| f.kind == *kind)
            .map(|f| format!("'{}'", f.path.replace('\'', "''")))
            .collect();
        let locations = if locations.is_empty() {
            "'none.csv'".to_string()
        } else {
            locations.join(", ")
        };
        let _ = writeln!(sql, "ALTER TABLE {table} LOCATION ({locations});");
    }
    if t.topic.compaction().compact {
        for statement in t.merge_statements() {
            let _ = writeln!(sql, "{statement};");
        }
    } else {
        let _ = writeln!(
            sql,
            "INSERT INTO {} SELECT * FROM {};",
            t.table("events"),
            t.table("events_files")
        );
    }
    let _ = writeln!(
        sql,
        "INSERT INTO {} (sequence) VALUES ({seq});\nCOMMIT;",
        t.table("loaded_runs")
    );
}

/// psql's client-side COPY of one file with the topic's CSV dialect.
fn postgres_copy(topic: &Topic, table: &str, path: &std::path::Path) -> String {
    let csv = &topic.output().csv;
    let literal = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut options = vec!["FORMAT csv".to_string(), format!("HEADER {}", csv.header)];
    options.push(format!("DELIMITER {}", literal(&csv.delimiter.to_string())));
    options.push(format!("QUOTE {}", literal(&csv.quote.to_string())));
    if let Some(escape) = csv.escape {
        options.push(format!("ESCAPE {}", literal(&escape.to_string())));
    }
    options.push(format!("NULL {}", literal(&csv.null)));
    let path = path.display().to_string();
    let from = match csv.compression {
        CsvCompression::None => literal(&path),
        CsvCompression::Gzip => format!(
            "PROGRAM {}",
            literal(&format!("gzip -dc {}", shell_quote(&path)))
        ),
        CsvCompression::Zstd => format!(
            "PROGRAM {}",
            literal(&format!("zstd -dc {}", shell_quote(&path)))
        ),
    };
    format!("\\copy {table} FROM {from} WITH ({})\n", options.join(", "))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
