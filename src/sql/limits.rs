//! How big a statement may be, checked before planning: planning and optimising recurse
//! over the expression tree, so an expression nested deep enough (`1+1+…+1` two thousand
//! times, a 12,000-term `OR` chain) would exhaust a thread's stack and abort the process.
//! The parser does not stop these: chains of one operator are parsed in a loop, not by
//! recursion, and only the later passes recurse. What the parser does recurse on —
//! parentheses, `CASE`, prefix operators, subqueries — is capped before parsing, below its
//! own recursion limit (50): near that limit some forms (`CAST(` or `NOT (` nested 48
//! deep) make it backtrack exponentially and spin for minutes.
//!
//! The executor's threads have stacks sized for [`MAX_EXPR_DEPTH`] with a wide margin (see
//! [`crate::executor::STACK_BYTES`]); the fuzz suite and `tests/sql_limits.rs` probe both
//! sides of each limit.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Expr, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::QueryError;

/// Longest SQL text accepted, in bytes.
pub const MAX_SQL_BYTES: usize = 1 << 20;
/// Deepest expression nesting accepted (`a OR b OR c` is 3 deep: the parser nests
/// left-associative chains).
pub const MAX_EXPR_DEPTH: usize = 256;
/// Deepest nesting of parentheses and `CASE`, and longest run of prefix operators
/// (`NOT NOT …`, `- - …`), counted on the tokens before parsing.
pub const MAX_NESTING: usize = 32;

pub fn check_text(sql: &str) -> Result<(), QueryError> {
    if sql.trim().is_empty() {
        return Err(QueryError::invalid("sql", "is empty", None));
    }
    if sql.len() > MAX_SQL_BYTES {
        let message = format!("is {} bytes long; the limit is {MAX_SQL_BYTES} bytes", sql.len());
        return Err(QueryError::invalid("sql", message, None));
    }
    check_nesting(sql)
}

/// Nesting counted on the token stream (linear, whatever the text).
fn check_nesting(sql: &str) -> Result<(), QueryError> {
    // Text that does not tokenize is left to the parser, which reports it properly.
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else { return Ok(()) };
    let (mut depth, mut deepest, mut run, mut longest_run) = (0usize, 0usize, 0usize, 0usize);
    for token in tokens {
        match &token {
            Token::Whitespace(_) => continue,
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Word(w) if w.keyword == Keyword::CASE => depth += 1,
            Token::Word(w) if w.keyword == Keyword::END => depth = depth.saturating_sub(1),
            _ => {}
        }
        deepest = deepest.max(depth);
        let prefix = matches!(&token, Token::Minus | Token::Plus | Token::Tilde | Token::ExclamationMark)
            || matches!(&token, Token::Word(w) if w.keyword == Keyword::NOT);
        run = if prefix { run + 1 } else { 0 };
        longest_run = longest_run.max(run);
    }
    if deepest > MAX_NESTING || longest_run > MAX_NESTING {
        let message =
            format!("parentheses, CASE or prefix operators (NOT, -) are nested more than {MAX_NESTING} levels deep");
        return Err(QueryError::invalid("sql", message, None));
    }
    Ok(())
}

/// Reject statements nested deeper than the limits. The walk stops at the first level past
/// a limit, so it never recurses deeper than the limit itself.
pub fn check_statement(statement: &DfStatement) -> Result<(), QueryError> {
    let inner = match statement {
        DfStatement::Statement(s) => s.as_ref(),
        DfStatement::Explain(e) => return check_statement(&e.statement),
        // DDL and COPY are refused by the read-only check after planning.
        _ => return Ok(()),
    };
    let mut depth = Depth::default();
    match inner.visit(&mut depth) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(limit) => Err(limit),
    }
}

#[derive(Default)]
struct Depth {
    exprs: usize,
}

impl Visitor for Depth {
    type Break = QueryError;

    fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<QueryError> {
        self.exprs += 1;
        if self.exprs > MAX_EXPR_DEPTH {
            let message = format!(
                "an expression is nested more than {MAX_EXPR_DEPTH} levels deep (long chains of one \
                 operator count one level per term); split it, or use IN (…) for lists of values"
            );
            return ControlFlow::Break(QueryError::invalid("sql", message, None));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<QueryError> {
        self.exprs -= 1;
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    /// Parse and check on a thread with the executor's stack: dropping a parsed
    /// 12,000-term chain recurses as deep as the chain.
    fn check(sql: &str) -> Result<(), QueryError> {
        check_text(sql)?;
        let sql = sql.to_string();
        std::thread::Builder::new()
            .stack_size(crate::executor::STACK_BYTES)
            .spawn(move || {
                let mut statements = DFParser::parse_sql(&sql).expect("parses");
                check_statement(&statements.pop_front().expect("one statement"))
            })
            .expect("thread")
            .join()
            .expect("no panic")
    }

    fn chain(term: &str, op: &str, n: usize) -> String {
        vec![term; n].join(op)
    }

    #[test]
    fn long_chains_are_refused_by_depth() {
        assert!(check(&format!("SELECT {}", chain("1", " + ", 100))).is_ok());
        let e = check(&format!("SELECT {}", chain("1", " + ", 2_000))).unwrap_err();
        assert!(e.to_string().contains("256 levels"), "{e}");
        let or = format!("SELECT 1 FROM t WHERE {}", chain("level = 'A'", " OR ", 12_000));
        assert!(matches!(check(&or), Err(QueryError::InvalidParam { .. })));
    }

    #[test]
    fn nesting_the_parser_recurses_on_is_its_own_limit() {
        let mut sql = "SELECT 1".to_string();
        for _ in 0..40 {
            sql = format!("SELECT * FROM ({sql}) t");
        }
        assert!(DFParser::parse_sql(&sql).is_err());
    }

    #[test]
    fn nesting_near_the_parser_limit_is_refused_before_parsing() {
        let nested = |open: &str, inner: &str, close: &str, n: usize| {
            format!("SELECT {}{inner}{}", open.repeat(n), close.repeat(n))
        };
        assert!(check_text(&nested("CAST(", "1", " AS BIGINT)", 32)).is_ok());
        for sql in [
            nested("CAST(", "1", " AS BIGINT)", 48),
            nested("NOT (", "TRUE", ")", 47),
            nested("CASE WHEN TRUE THEN ", "1", " END", 40),
            format!("SELECT {}1", "- ".repeat(40)),
            format!("SELECT {}TRUE", "NOT ".repeat(40)),
        ] {
            let e = check_text(&sql).unwrap_err();
            assert!(e.to_string().contains("nested more than 32"), "{sql}: {e}");
        }
    }

    #[test]
    fn empty_and_huge_texts_are_refused() {
        assert!(check_text("  ").is_err());
        assert!(check_text(&"x".repeat(MAX_SQL_BYTES + 1)).unwrap_err().to_string().contains("limit"));
    }
}
