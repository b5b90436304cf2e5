//! The merge of one staged run, by key, the same logic in every dialect
//! (each writes its DELETE and the closing of history ranges its own way).
//!
//! The run's KEYS say which versions it decided. Per key:
//! - the ODS takes the run's MAIN version when it is newer than the version
//!   the ODS holds (a late copy of the ODS's own version replaces it too: the
//!   last to arrive wins); its rows replace the key's rows, none when the
//!   version is a delete or maps to no row; `<base>_ods_versions` remembers
//!   the version, rows or not, so that an older one never comes back;
//! - the history takes every version of the run (MAIN, CORRECTION and OLDER)
//!   into its place: its rows (a delete: one row of its own, `deleted`, with
//!   the key and ordering columns only), `valid_from` its ordering key,
//!   `valid_to` the next higher ordering key of the key (any version, deletes
//!   included; NULL and `is_current` for the newest), so that a late version
//!   shortens its predecessor's range.

use super::dialect::{DELETED, KIND};
use super::target::Target;

impl Target<'_> {
    /// The statements of the merge, without their semicolons.
    pub(super) fn merge_statements(&self) -> Vec<String> {
        let mut statements = self.ods_statements();
        if self.history() {
            statements.extend(self.history_statements());
        }
        statements
    }

    fn ods_statements(&self) -> Vec<String> {
        let o = self.ordering_ident();
        let (keys, winners, ods, versions) = (
            self.table("keys"),
            self.table("winners"),
            self.table("ods"),
            self.table("ods_versions"),
        );
        let choose = format!(
            "INSERT INTO {winners} ({list}, {DELETED}, {KIND})\n\
             SELECT {k_list}, k.{DELETED}, k.{KIND}\n\
             FROM {keys} k\n\
             LEFT JOIN {versions} v ON {v_equal}\n\
             WHERE (k.{KIND} = 'main' AND (v.{o} IS NULL OR k.{o} > v.{o}))\n\
             \x20  OR (k.{KIND} = 'correction' AND v.{o} = k.{o}\n\
             \x20      AND NOT EXISTS (SELECT 1 FROM {keys} m WHERE m.{KIND} = 'main' AND {m_equal}))",
            list = self.version_list(""),
            k_list = self.version_list("k."),
            v_equal = self.keys_equal("v", "k"),
            m_equal = self.keys_equal("m", "k"),
        );
        let insert = format!(
            "INSERT INTO {ods} ({columns})\n\
             SELECT {m_columns} FROM {main} m\n\
             JOIN {winners} w ON {w_main} AND w.{KIND} = 'main'\n\
             WHERE {w_live}\n\
             UNION ALL\n\
             SELECT {c_columns} FROM {correction} c\n\
             JOIN {winners} w ON {w_correction} AND w.{KIND} = 'correction'\n\
             WHERE {w_live}",
            columns = self.column_list(""),
            m_columns = self.column_list("m."),
            c_columns = self.column_list("c."),
            main = self.table("main"),
            correction = self.table("correction"),
            w_main = self.versions_equal("w", "m"),
            w_correction = self.versions_equal("w", "c"),
            w_live = self.dialect.is_false(&format!("w.{DELETED}")),
        );
        vec![
            format!("DELETE FROM {winners}"),
            choose,
            self.dialect
                .delete_matching(&ods, "o", &winners, "w", &|o| self.keys_equal("w", o)),
            insert,
            self.dialect
                .delete_matching(&versions, "v", &winners, "w", &|v| self.keys_equal("w", v)),
            format!(
                "INSERT INTO {versions} ({list}, {DELETED})\nSELECT {list}, {DELETED} FROM {winners}",
                list = self.version_list(""),
            ),
        ]
    }

    fn history_statements(&self) -> Vec<String> {
        let o = self.ordering_ident();
        let (keys, history, versions) = (
            self.table("keys"),
            self.table("history"),
            self.table("history_versions"),
        );
        let ordering_type = self.ordering_type();
        let (live, dead) = (self.dialect.boolean(false), self.dialect.boolean(true));
        let version = |alias: &str, table: &str, kind: &str| {
            format!(
                "SELECT {columns}, {alias}.{o}, CAST(NULL AS {ordering_type}), {live}, {live} FROM {table} {alias}\n\
                 JOIN {keys} k ON {k_equal} AND k.{KIND} = '{kind}'\n\
                 WHERE {k_live}",
                columns = self.column_list(&format!("{alias}.")),
                k_equal = self.versions_equal("k", alias),
                k_live = self.dialect.is_false(&format!("k.{DELETED}")),
            )
        };
        // A delete's row: its key and ordering key, nothing else.
        let marker_columns = self
            .columns
            .iter()
            .map(|(name, data_type)| {
                if self.keys.contains(name) || *name == self.ordering {
                    format!("k.{}", self.ident(name))
                } else {
                    format!("CAST(NULL AS {})", self.dialect.sql_type(data_type))
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let insert = format!(
            "INSERT INTO {history} ({columns}, valid_from, valid_to, {DELETED}, is_current)\n\
             {main}\n\
             UNION ALL\n\
             {correction}\n\
             UNION ALL\n\
             {older}\n\
             UNION ALL\n\
             SELECT {marker_columns}, k.{o}, CAST(NULL AS {ordering_type}), {dead}, {live} FROM {keys} k\n\
             WHERE {k_deleted}",
            columns = self.column_list(""),
            main = version("m", &self.table("main"), "main"),
            correction = version("c", &self.table("correction"), "correction"),
            older = version("x", &self.table("older"), "older"),
            k_deleted = self.dialect.is_true(&format!("k.{DELETED}")),
        );
        let current = format!(
            "UPDATE {history} SET is_current = {now}\n\
             WHERE EXISTS (SELECT 1 FROM {keys} k WHERE {k_equal})",
            now = self
                .dialect
                .boolean_of(&format!("{history}.valid_to IS NULL")),
            k_equal = self.keys_equal("k", &history),
        );
        let mut statements = vec![
            self.dialect
                .delete_matching(&versions, "v", &keys, "k", &|v| self.versions_equal("k", v)),
            format!(
                "INSERT INTO {versions} ({list}, {DELETED})\nSELECT {list}, {DELETED} FROM {keys}",
                list = self.version_list(""),
            ),
            self.dialect
                .delete_matching(&history, "h", &keys, "k", &|h| {
                    format!("{} AND {h}.valid_from = k.{o}", self.keys_equal("k", h))
                }),
            insert,
        ];
        statements.extend(self.dialect.close_ranges(self));
        statements.push(current);
        statements
    }
}
