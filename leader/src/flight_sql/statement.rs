//! Telling queries from updates, command tags, LIKE patterns and table names as SQL.

/// The first keyword of a statement, lowercased, after whitespace, comments
/// and opening parentheses.
pub fn leading_keyword(sql: &str) -> String {
    skip_comments(sql)
        .trim_start_matches(|c: char| c == '(' || c.is_whitespace())
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The statement without its leading whitespace and comments (`--`, `/* */`).
pub fn skip_comments(sql: &str) -> &str {
    let mut s = sql.trim_start();
    loop {
        if let Some(rest) = s.strip_prefix("--") {
            s = rest
                .split_once('\n')
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest
                .split_once("*/")
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else {
            return s;
        }
    }
}

/// Statements that return rows: queries, as opposed to updates.
pub fn returns_rows(sql: &str) -> bool {
    matches!(
        leading_keyword(sql).as_str(),
        "select" | "with" | "values" | "show" | "explain" | "describe" | "table"
    )
}

/// The rows a command tag reports (`INSERT 0 5` → 5, `CREATE TABLE` → 0).
pub fn tag_rows(tag: &str) -> i64 {
    tag.rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// SQL `LIKE` as Flight SQL filter patterns use it: `%`, `_`, `\` escapes.
pub(super) fn like(pattern: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('%', rest)) => (0..=s.len()).any(|i| go(rest, &s[i..])),
            Some(('_', rest)) => !s.is_empty() && go(rest, &s[1..]),
            Some(('\\', [c, rest @ ..])) => s.first() == Some(c) && go(rest, &s[1..]),
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    go(&p, &s)
}

/// A table name as SQL text: bare when plain (dots kept as schema
/// separators, as the engine registers them), else double-quoted.
pub(super) fn table_ref(name: &str) -> String {
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.'));
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_give_affected_rows() {
        assert_eq!(tag_rows("INSERT 0 5"), 5);
        assert_eq!(tag_rows("COPY 7"), 7);
        assert_eq!(tag_rows("UNLOAD 12"), 12);
        assert_eq!(tag_rows("CREATE TABLE"), 0);
        assert_eq!(tag_rows(""), 0);
    }

    #[test]
    fn queries_are_told_from_updates() {
        assert!(returns_rows("select 1"));
        assert!(returns_rows(
            "  -- note\n/* block */ WITH x AS (SELECT 1) SELECT * FROM x"
        ));
        assert!(returns_rows("(SELECT 1)"));
        assert!(returns_rows("EXPLAIN SELECT 1"));
        assert!(!returns_rows("insert into t values (1)"));
        assert!(!returns_rows("CREATE TABLE t (a INT)"));
        assert!(!returns_rows("-- only a comment"));
        assert_eq!(leading_keyword("/* unterminated"), "");
        assert_eq!(skip_comments("-- a\n  select 1"), "select 1");
    }

    #[test]
    fn like_patterns() {
        assert!(like("%", "anything"));
        assert!(like("public", "public"));
        assert!(like("pub%", "public"));
        assert!(like("p_blic", "public"));
        assert!(like("stl\\_%", "stl_query"));
        assert!(!like("stl\\_%", "stlxquery"));
        assert!(!like("pub", "public"));
        assert!(!like("_", ""));
    }

    #[test]
    fn table_names_as_sql() {
        assert_eq!(table_ref("orders"), "orders");
        assert_eq!(table_ref("stl_query"), "stl_query");
        assert_eq!(table_ref("My Table"), "\"My Table\"");
        assert_eq!(table_ref("1x"), "\"1x\"");
    }
}
