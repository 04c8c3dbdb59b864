//! The PostgreSQL tables fletch reads, under the names the deployment gives them.
//!
//! The pipeline's backend creates `logs` (and `events`) through Hibernate; another
//! deployment may call them `app_logs` or keep them in their own schema. Names come from
//! `postgres.table` and `postgres.events_table`: `name` or `schema.name`, each part an
//! SQL identifier used exactly as written (quoted, so case is kept).

use super::filters::quote_ident;
use crate::error::QueryError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    parts: Vec<String>,
}

impl TableName {
    /// Parse the setting `setting` (for the error) whose value is `value`.
    pub fn parse(setting: &str, value: &str) -> Result<Self, QueryError> {
        let parts: Vec<String> = value.split('.').map(str::to_string).collect();
        let ident = |p: &String| {
            let mut chars = p.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        };
        if parts.len() > 2 || !parts.iter().all(ident) {
            return Err(QueryError::invalid(
                setting,
                format!("`{value}` is not a table name: use `name` or `schema.name` (letters, digits, `_`)"),
                None,
            ));
        }
        Ok(Self { parts })
    }

    /// The name as SQL: `"logs"`, `"public"."logs"`.
    pub fn sql(&self) -> String {
        self.parts.iter().map(|p| quote_ident(p)).collect::<Vec<_>>().join(".")
    }

    /// The name as an SQL string literal, for `to_regclass(…)`.
    pub fn literal(&self) -> String {
        format!("'{}'", self.sql())
    }

    /// `schema` (if given), then the table.
    pub fn parts(&self) -> &[String] {
        &self.parts
    }
}

/// Where `logs` and `events` live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub logs: TableName,
    pub events: TableName,
}

impl Default for Tables {
    fn default() -> Self {
        Self { logs: TableName { parts: vec!["logs".into()] }, events: TableName { parts: vec!["events".into()] } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_as_written_and_checked() {
        let t = TableName::parse("postgres.table", "Pipeline.app_logs").unwrap();
        assert_eq!(t.sql(), r#""Pipeline"."app_logs""#);
        assert_eq!(t.literal(), r#"'"Pipeline"."app_logs"'"#);
        for bad in ["", "a.b.c", "logs; DROP TABLE x", "1logs", "lo\"gs", "a."] {
            assert!(TableName::parse("postgres.table", bad).is_err(), "{bad}");
        }
    }
}
