//! Built-in jobs that run natively inside the worker, no subprocess:
//! `wordcount`, `grep --pattern RE`, `sort`.

use regex::bytes::Regex;

use super::records::{Record, parse};

/// A native mapper/combiner/reducer set.
pub enum Builtin {
    WordCount,
    Grep(Regex),
    Sort,
    /// Identity on binary records, total-order partitioned (see `tera`).
    TeraSort,
}

impl Builtin {
    pub fn new(
        name: &str,
        args: &std::collections::HashMap<String, String>,
    ) -> Result<Self, String> {
        match name {
            "wordcount" => Ok(Builtin::WordCount),
            "sort" => Ok(Builtin::Sort),
            "terasort" => Ok(Builtin::TeraSort),
            "grep" => {
                let p = args.get("pattern").ok_or("grep needs a pattern")?;
                Regex::new(p)
                    .map(Builtin::Grep)
                    .map_err(|e| format!("bad pattern {p:?}: {e}"))
            }
            other => Err(format!("unknown built-in {other:?}")),
        }
    }

    /// Map one input line.
    pub fn map(&self, line: &[u8], emit: &mut impl FnMut(Vec<u8>, Vec<u8>)) {
        match self {
            Builtin::WordCount => {
                for w in line
                    .split(|b| b.is_ascii_whitespace())
                    .filter(|w| !w.is_empty())
                {
                    emit(w.to_vec(), b"1".to_vec());
                }
            }
            Builtin::Grep(re) => {
                for m in re.find_iter(line) {
                    emit(m.as_bytes().to_vec(), b"1".to_vec());
                }
            }
            Builtin::Sort => {
                let (k, v) = parse(line);
                emit(k, v);
            }
            Builtin::TeraSort => {
                let k = super::tera::KEY.min(line.len());
                emit(line[..k].to_vec(), line[k..].to_vec());
            }
        }
    }

    /// Whether values of one key can be folded early (map side).
    pub fn has_combiner(&self) -> bool {
        matches!(self, Builtin::WordCount | Builtin::Grep(_))
    }

    /// Reduce (or combine) all values of one key.
    pub fn reduce(
        &self,
        key: &[u8],
        values: Vec<Vec<u8>>,
        emit: &mut impl FnMut(Vec<u8>, Vec<u8>),
    ) {
        match self {
            Builtin::WordCount | Builtin::Grep(_) => {
                let sum: i64 = values
                    .iter()
                    .map(|v| {
                        std::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.trim().parse::<i64>().ok())
                            .unwrap_or(0)
                    })
                    .sum();
                emit(key.to_vec(), sum.to_string().into_bytes());
            }
            Builtin::Sort | Builtin::TeraSort => {
                for v in values {
                    emit(key.to_vec(), v);
                }
            }
        }
    }
}

/// Folds a key-sorted record stream into groups, reducing each group as
/// soon as its key changes.
#[derive(Default)]
pub struct Grouper {
    current: Option<Vec<u8>>,
    values: Vec<Vec<u8>>,
    pub groups: u64,
}

impl Grouper {
    pub fn push(
        &mut self,
        b: &Builtin,
        key: Vec<u8>,
        value: Vec<u8>,
        emit: &mut impl FnMut(Vec<u8>, Vec<u8>),
    ) {
        if self.current.as_ref().is_some_and(|c| *c != key) {
            self.flush(b, emit);
        }
        if self.current.is_none() {
            self.current = Some(key);
        }
        self.values.push(value);
    }

    pub fn flush(&mut self, b: &Builtin, emit: &mut impl FnMut(Vec<u8>, Vec<u8>)) {
        if let Some(c) = self.current.take() {
            self.groups += 1;
            b.reduce(&c, std::mem::take(&mut self.values), emit);
        }
    }
}

/// Groups a key-sorted record sequence and reduces each group.
pub fn reduce_sorted(
    b: &Builtin,
    records: impl IntoIterator<Item = Record>,
    groups: &mut u64,
    emit: &mut impl FnMut(Vec<u8>, Vec<u8>),
) {
    let mut g = Grouper::default();
    for (k, v) in records {
        g.push(b, k, v, emit);
    }
    g.flush(b, emit);
    *groups += g.groups;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wordcount_and_grep() {
        let wc = Builtin::new("wordcount", &Default::default()).unwrap();
        let mut out = Vec::new();
        wc.map(b"a b  a", &mut |k, v| out.push((k, v)));
        out.sort();
        let mut groups = 0;
        let mut res = Vec::new();
        reduce_sorted(&wc, out, &mut groups, &mut |k, v| res.push((k, v)));
        assert_eq!(
            res,
            vec![
                (b"a".to_vec(), b"2".to_vec()),
                (b"b".to_vec(), b"1".to_vec())
            ]
        );
        assert_eq!(groups, 2);
        let args = [("pattern".to_string(), "b[a-z]+".to_string())]
            .into_iter()
            .collect();
        let g = Builtin::new("grep", &args).unwrap();
        let mut hits = Vec::new();
        g.map(b"foo bar baz", &mut |k, _| hits.push(k));
        assert_eq!(hits, vec![b"bar".to_vec(), b"baz".to_vec()]);
    }
}
