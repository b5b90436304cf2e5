//! The merge of one staged run, by key, the same logic in every dialect.
//!
//! The run's KEYS say which versions it decided. Per key:
//! - the ODS takes the run's MAIN version when it is newer than the version
//!   the ODS holds (a late copy of the ODS's own version replaces it too: the
//!   last to arrive wins); its rows replace the key's rows, none when the
//!   version is a delete or maps to no row; `<base>_ods_versions` remembers
//!   the version, rows or not, so that an older one never comes back;
//! - the history takes every version of the run (MAIN, CORRECTION and OLDER)
//!   into its place: its rows, `valid_from` its ordering key, `valid_to` the next
//!   higher ordering key of the key (any version, deletes included), so that
//!   a late version shortens its predecessor's range.

use super::Dialect;
use super::target::{DELETED, KIND, Target};

impl Target<'_> {
    /// Deletes the rows of `table` for which `condition` holds; `condition`
    /// gets the name to refer to `table` by and compares it with `other`,
    /// aliased `other_alias`.
    fn delete_matching(
        &self,
        table: &str,
        alias: &str,
        other: &str,
        other_alias: &str,
        condition: impl Fn(&str) -> String,
    ) -> String {
        match self.dialect {
            Dialect::Oracle => format!(
                "DELETE FROM {table} {alias}\nWHERE EXISTS (SELECT 1 FROM {other} {other_alias} WHERE {})",
                condition(alias)
            ),
            // Redshift's DELETE takes no alias for its target.
            Dialect::Redshift => format!(
                "DELETE FROM {table}\nUSING {other} {other_alias}\nWHERE {}",
                condition(table)
            ),
            Dialect::Postgres => format!(
                "DELETE FROM {table} {alias}\nUSING {other} {other_alias}\nWHERE {}",
                condition(alias)
            ),
        }
    }

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
            w_live = self.is_false(&format!("w.{DELETED}")),
        );
        vec![
            format!("DELETE FROM {winners}"),
            choose,
            self.delete_matching(&ods, "o", &winners, "w", |o| self.keys_equal("w", o)),
            insert,
            self.delete_matching(&versions, "v", &winners, "w", |v| self.keys_equal("w", v)),
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
        let ordering_type = self
            .version_columns()
            .last()
            .map(|c| c.split_once(' ').map_or("", |(_, t)| t).to_string())
            .unwrap_or_default();
        let insert = format!(
            "INSERT INTO {history} ({columns}, valid_from, valid_to)\n\
             SELECT {m_columns}, m.{o}, CAST(NULL AS {ordering_type}) FROM {main} m\n\
             JOIN {keys} k ON {k_main} AND k.{KIND} = 'main'\n\
             WHERE {k_live}\n\
             UNION ALL\n\
             SELECT {c_columns}, c.{o}, CAST(NULL AS {ordering_type}) FROM {correction} c\n\
             JOIN {keys} k ON {k_correction} AND k.{KIND} = 'correction'\n\
             WHERE {k_live}\n\
             UNION ALL\n\
             SELECT {x_columns}, x.{o}, CAST(NULL AS {ordering_type}) FROM {older} x\n\
             JOIN {keys} k ON {k_older} AND k.{KIND} = 'older'\n\
             WHERE {k_live}",
            x_columns = self.column_list("x."),
            older = self.table("older"),
            k_older = self.versions_equal("k", "x"),
            columns = self.column_list(""),
            m_columns = self.column_list("m."),
            c_columns = self.column_list("c."),
            main = self.table("main"),
            correction = self.table("correction"),
            k_main = self.versions_equal("k", "m"),
            k_correction = self.versions_equal("k", "c"),
            k_live = self.is_false(&format!("k.{DELETED}")),
        );
        let mut statements = vec![
            self.delete_matching(&versions, "v", &keys, "k", |v| self.versions_equal("k", v)),
            format!(
                "INSERT INTO {versions} ({list}, {DELETED})\nSELECT {list}, {DELETED} FROM {keys}",
                list = self.version_list(""),
            ),
            self.delete_matching(&history, "h", &keys, "k", |h| {
                format!("{} AND {h}.valid_from = k.{o}", self.keys_equal("k", h))
            }),
            insert,
        ];
        statements.extend(self.close_ranges());
        statements
    }

    /// Sets `valid_to` of every history row of the run's keys: the next
    /// higher ordering key of the key, NULL for the newest.
    fn close_ranges(&self) -> Vec<String> {
        let o = self.ordering_ident();
        let (keys, history, versions) = (
            self.table("keys"),
            self.table("history"),
            self.table("history_versions"),
        );
        match self.dialect {
            // Redshift takes no correlated subquery in SET: clear, then join.
            Dialect::Redshift => vec![
                format!(
                    "UPDATE {history} SET valid_to = NULL\nFROM (SELECT DISTINCT {key_list} FROM {keys}) k\nWHERE {k_equal}",
                    key_list = self.key_list(""),
                    k_equal = self.keys_equal("k", history.as_str()),
                ),
                format!(
                    "UPDATE {history} SET valid_to = n.next_from\n\
                     FROM (\n\
                     \x20   SELECT {h_keys}, h.valid_from, MIN(v.{o}) AS next_from\n\
                     \x20   FROM {history} h\n\
                     \x20   JOIN {versions} v ON {v_equal} AND v.{o} > h.valid_from\n\
                     \x20   WHERE EXISTS (SELECT 1 FROM {keys} k WHERE {k_equal})\n\
                     \x20   GROUP BY {h_keys}, h.valid_from\n\
                     ) n\n\
                     WHERE {n_equal} AND {history}.valid_from = n.valid_from",
                    h_keys = self.key_list("h."),
                    v_equal = self.keys_equal("v", "h"),
                    k_equal = self.keys_equal("k", "h"),
                    n_equal = self.keys_equal("n", history.as_str()),
                ),
            ],
            _ => vec![format!(
                "UPDATE {history} h\n\
                 SET valid_to = (SELECT MIN(v.{o}) FROM {versions} v WHERE {v_equal} AND v.{o} > h.valid_from)\n\
                 WHERE EXISTS (SELECT 1 FROM {keys} k WHERE {k_equal})",
                v_equal = self.keys_equal("v", "h"),
                k_equal = self.keys_equal("k", "h"),
            )],
        }
    }
}
