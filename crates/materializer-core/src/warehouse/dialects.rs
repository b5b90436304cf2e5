//! The engine's list of warehouse dialects: the CLI and the API take their
//! names from here.

use std::sync::OnceLock;

use super::dialect::Dialect;
use super::dialect::oracle::Oracle;
use super::dialect::postgres::Postgres;
use super::dialect::redshift::Redshift;
use crate::commit::Publication;

/// Every dialect, in the order they are offered (`--help`, the OpenAPI
/// document); names are unique.
static DIALECTS: &[&dyn Dialect] = &[&Postgres, &Redshift, &Oracle];

/// Every dialect the engine writes import SQL for.
pub fn dialects() -> &'static [&'static dyn Dialect] {
    DIALECTS
}

/// The names of [`dialects`], in the same order.
pub fn dialect_names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| DIALECTS.iter().map(|d| d.name()).collect())
}

/// The dialect called `name` (as `--dialect` and `?dialect=` take it).
pub fn dialect_named(name: &str) -> Result<&'static dyn Dialect, UnknownDialect> {
    DIALECTS
        .iter()
        .copied()
        .find(|d| d.name() == name)
        .ok_or_else(|| UnknownDialect {
            name: name.to_string(),
        })
}

/// A dialect name that is not one of [`dialects`].
#[derive(Debug, thiserror::Error)]
#[error("unknown warehouse dialect {name:?}; known: {known}", known = dialect_names().join(", "))]
pub struct UnknownDialect {
    pub name: String,
}

/// What the dialects need published beside every committed run.
pub fn publications() -> impl Iterator<Item = &'static dyn Publication> {
    DIALECTS.iter().filter_map(|d| d.publication())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dialect_is_found_by_its_own_name() {
        assert_eq!(dialect_names().len(), dialects().len());
        for (dialect, name) in dialects().iter().zip(dialect_names()) {
            assert_eq!(dialect.name(), *name);
            assert_eq!(dialect_named(name).unwrap().name(), *name);
        }
        let mut names = dialect_names().to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), dialects().len(), "a name used twice");
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_known_ones() {
        let error = dialect_named("mysql").unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown warehouse dialect \"mysql\"; known: postgres, redshift, oracle"
        );
        assert!(dialect_named("Postgres").is_err(), "names are exact");
    }
}
