//! The warehouse contract of a topic, in words: what loading its runs leaves
//! in the warehouse.

use crate::config::Topic;

/// The contract, in one paragraph wrapped at about 100 columns, for
/// `explain` and `warehouse-sql`.
pub fn contract(topic: &Topic) -> String {
    wrap(&contract_text(topic))
}

fn contract_text(topic: &Topic) -> String {
    if !topic.compaction().compact {
        return "This topic keeps every event (compact = false): each committed run's MAIN files are \
                appended to <base>_events, in run order; there are no corrections, no KEYS files and \
                no merge."
            .into();
    }
    let deletes = match topic.deletes() {
        Some(predicate) => format!(
            "an event for which `{}` holds deletes its key",
            predicate.sql()
        ),
        None => "no event deletes its key (set delete_when in topic.toml)".into(),
    };
    format!(
        "Load every committed run, in run order. The ODS then holds, for every key, the rows the \
         mapping makes of the key's newest version (highest ordering key; among equal ones the last \
         to arrive, of the partition that sorts last within a run), or none when that version deletes the key or the mapping makes no row of it (an \
         unnest of an empty or null array, a WHERE); a late version never replaces a newer one. \
         {history}Each run's KEYS files name every version it decided, rows or not, so that the \
         merge replaces by key. Here {deletes}.",
        history = if topic.warehouse().history {
            "The history table holds the rows of every version, valid from its ordering key \
             (included) to the next higher ordering key of its key (excluded; NULL, and is_current, \
             for the newest), a late version put in its place; a delete is a row of its own (deleted, \
             with the key and ordering columns only), a version the mapping makes no row of has \
             none. "
        } else {
            ""
        },
    )
}

/// Wraps a paragraph into lines of at most 96 columns (SQL comments of about 100).
fn wrap(text: &str) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split_whitespace() {
        if line > 0 && line + word.len() > 96 {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.len();
    }
    out
}
