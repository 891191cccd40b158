//! Token-level view of SQL text for the query rewriter: where each token starts and ends, so that parts of the
//! user's query found through PostgreSQL's raw parse tree (which records where each node starts) can be cut out
//! and put back together verbatim. Only boundaries are lexed here; PostgreSQL parses.

/// A token's class: only what the rewriter needs to find clause boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok {
    /// Identifier or keyword.
    Word,
    /// `"quoted identifier"`.
    Quoted,
    /// String literal (`'…'`, `E'…'`, `$tag$…$tag$`).
    Str,
    Num,
    LParen,
    RParen,
    Comma,
    Semi,
    /// Anything else: operators, `.`, `[`, `]`, `::`.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) kind: Tok,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

fn word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The tokens of `sql` (comments and whitespace skipped). Unterminated strings or comments end at the end of the
/// text (PostgreSQL has already accepted or rejected the text; this only needs boundaries).
pub(crate) fn lex(sql: &str) -> Vec<Token> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let kind = match c {
            _ if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'\'' => {
                i = quoted_end(b, i, b'\'', false);
                Tok::Str
            }
            b'E' | b'e' if b.get(i + 1) == Some(&b'\'') => {
                i = quoted_end(b, i + 1, b'\'', true);
                Tok::Str
            }
            b'"' => {
                i = quoted_end(b, i, b'"', false);
                Tok::Quoted
            }
            b'$' if dollar_tag(b, i).is_some() => {
                let tag = dollar_tag(b, i).expect("checked");
                let body = i + tag.len();
                i = sql[body..].find(tag).map_or(b.len(), |p| body + p + tag.len());
                Tok::Str
            }
            b'0'..=b'9' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                    // An exponent's sign belongs to the number.
                    if (b[i] == b'e' || b[i] == b'E') && matches!(b.get(i + 1), Some(b'+' | b'-')) {
                        i += 1;
                    }
                    i += 1;
                }
                Tok::Num
            }
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b';' => {
                i += 1;
                Tok::Semi
            }
            _ if word_byte(c) => {
                while i < b.len() && word_byte(b[i]) {
                    i += 1;
                }
                Tok::Word
            }
            b'+' | b'-' | b'*' | b'/' | b'<' | b'>' | b'=' | b'~' | b'!' | b'@' | b'#' | b'%' | b'^' | b'&' | b'|'
            | b'`' | b'?' | b':' => {
                while i < b.len() && b"+-*/<>=~!@#%^&|`?:".contains(&b[i]) {
                    i += 1;
                }
                Tok::Other
            }
            _ => {
                // One character (UTF-8 continuation bytes stay with it).
                i += 1;
                while i < b.len() && (b[i] & 0xC0) == 0x80 {
                    i += 1;
                }
                Tok::Other
            }
        };
        out.push(Token { kind, start, end: i });
    }
    out
}

/// The end of a quoted token opening at `i` (doubled quotes, and backslash escapes when `escapes`).
fn quoted_end(b: &[u8], mut i: usize, quote: u8, escapes: bool) -> usize {
    i += 1;
    while i < b.len() {
        if escapes && b[i] == b'\\' {
            i += 2;
        } else if b[i] == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// `$tag$` at `i`, if one starts there.
fn dollar_tag(b: &[u8], i: usize) -> Option<&str> {
    let rest = &b[i + 1..];
    let n = rest.iter().position(|&c| c == b'$')?;
    let tag = &rest[..n];
    (tag.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_') && !tag.first().is_some_and(u8::is_ascii_digit))
        .then(|| std::str::from_utf8(&b[i..i + n + 2]).ok())
        .flatten()
}

/// Keywords that end a `WHERE` clause (or a `FROM` list, with `where`) at the same nesting depth.
pub(crate) const AFTER_WHERE: [&str; 11] =
    ["group", "having", "window", "order", "limit", "offset", "fetch", "for", "union", "intersect", "except"];

/// SQL text with its tokens.
pub(crate) struct Text<'a> {
    pub(crate) sql: &'a str,
    pub(crate) toks: Vec<Token>,
}

impl<'a> Text<'a> {
    pub(crate) fn new(sql: &'a str) -> Self {
        Text { sql, toks: lex(sql) }
    }

    /// The index of the token starting at byte `offset`.
    pub(crate) fn at(&self, offset: usize) -> Option<usize> {
        self.toks.binary_search_by_key(&offset, |t| t.start).ok()
    }

    /// The token's text.
    pub(crate) fn tok(&self, i: usize) -> &'a str {
        &self.sql[self.toks[i].start..self.toks[i].end]
    }

    /// True when token `i` is the keyword `kw` (case-insensitive).
    pub(crate) fn is_word(&self, i: usize, kw: &str) -> bool {
        self.toks.get(i).is_some_and(|t| t.kind == Tok::Word) && self.tok(i).eq_ignore_ascii_case(kw)
    }

    /// The index of the `)` matching the `(` at `open`.
    pub(crate) fn matching(&self, open: usize) -> Option<usize> {
        let mut depth = 0usize;
        for (i, t) in self.toks.iter().enumerate().skip(open) {
            match t.kind {
                Tok::LParen => depth += 1,
                Tok::RParen => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// The byte span of `(…)` whose `(` starts at `offset`.
    pub(crate) fn parens_at(&self, offset: usize) -> Option<(usize, usize)> {
        let open = self.at(offset).filter(|&i| self.toks[i].kind == Tok::LParen)?;
        let close = self.matching(open)?;
        Some((self.toks[open].start, self.toks[close].end))
    }

    /// The span of a function call whose name starts at `offset`: `name[.name](…)`.
    pub(crate) fn call_at(&self, offset: usize) -> Option<(usize, usize)> {
        let first = self.at(offset)?;
        // `name`, or `schema.name`: the `(` comes within three tokens.
        let open = (first + 1..(first + 4).min(self.toks.len())).find(|&i| self.toks[i].kind == Tok::LParen)?;
        let close = self.matching(open)?;
        Some((offset, self.toks[close].end))
    }

    /// True when the text between `start` and `end` has balanced parentheses.
    pub(crate) fn balanced(&self, start: usize, end: usize) -> bool {
        let mut depth = 0i32;
        for t in self.toks.iter().filter(|t| t.start >= start && t.end <= end) {
            match t.kind {
                Tok::LParen => depth += 1,
                Tok::RParen => depth -= 1,
                _ => {}
            }
            if depth < 0 {
                return false;
            }
        }
        depth == 0
    }

    /// Spans of the elements of a list whose elements' leftmost tokens start at `starts`, opened by the keyword
    /// `open` (e.g. `where`) and separated by the keyword `and` (`sep = None`) or commas (`Some(Tok::Comma)`); the
    /// last element ends before the first of `closers` (or `)`, `;`, the end) at its depth. Parentheses around an
    /// element belong to it. `None` when the text does not look like that (the caller then leaves the query alone).
    pub(crate) fn list_spans(
        &self,
        starts: &[usize],
        open: &str,
        sep: Option<Tok>,
        closers: &[&str],
    ) -> Option<Vec<(usize, usize)>> {
        let mut firsts = Vec::with_capacity(starts.len());
        for (k, &s) in starts.iter().enumerate() {
            let mut j = self.at(s)?;
            while !self.opens(j, k, open, sep) && j > 0 && self.toks[j - 1].kind == Tok::LParen {
                j -= 1;
            }
            if !self.opens(j, k, open, sep) {
                return None;
            }
            firsts.push(j);
        }
        let mut spans = Vec::with_capacity(starts.len());
        for (k, &j) in firsts.iter().enumerate() {
            let last_tok = match firsts.get(k + 1) {
                Some(&next) => next.checked_sub(2)?,
                None => self.last_before_closer(j, closers)?,
            };
            let span = (self.toks[j].start, self.toks[last_tok].end);
            if last_tok < j || !self.balanced(span.0, span.1) {
                return None;
            }
            spans.push(span);
        }
        Some(spans)
    }

    /// True when the token before `j` opens element `k` of a list: `open` for the first, the separator after.
    fn opens(&self, j: usize, k: usize, open: &str, sep: Option<Tok>) -> bool {
        let Some(prev) = j.checked_sub(1) else { return false };
        match (k, sep) {
            (0, _) => self.is_word(prev, open),
            (_, None) => self.is_word(prev, "and"),
            (_, Some(kind)) => self.toks[prev].kind == kind,
        }
    }

    /// The last token of the element starting at token `j` that runs to the end of its clause.
    fn last_before_closer(&self, j: usize, closers: &[&str]) -> Option<usize> {
        let mut depth = 0i32;
        for i in j..self.toks.len() {
            match self.toks[i].kind {
                Tok::LParen => depth += 1,
                Tok::RParen if depth == 0 => return i.checked_sub(1),
                Tok::RParen => depth -= 1,
                Tok::Semi if depth == 0 => return i.checked_sub(1),
                Tok::Word if depth == 0 && closers.iter().any(|c| self.is_word(i, c)) => return i.checked_sub(1),
                _ => {}
            }
        }
        Some(self.toks.len() - 1)
    }

    /// The byte offset of the keyword token just before the token starting at `offset` (skipping `(`), if it is
    /// `kw`.
    pub(crate) fn keyword_before(&self, offset: usize, kw: &str) -> Option<usize> {
        let mut j = self.at(offset)?;
        while j > 0 && self.toks[j - 1].kind == Tok::LParen {
            j -= 1;
        }
        let prev = j.checked_sub(1)?;
        self.is_word(prev, kw).then(|| self.toks[prev].start)
    }
}

/// Applies non-overlapping `(start, end, replacement)` edits to `sql`.
pub(crate) fn apply(sql: &str, mut edits: Vec<(usize, usize, String)>) -> Option<String> {
    edits.sort_by_key(|e| (e.0, e.1));
    let mut out = String::with_capacity(sql.len() + 256);
    let mut at = 0;
    for (start, end, text) in edits {
        if start < at || end < start || end > sql.len() {
            return None;
        }
        out.push_str(&sql[at..start]);
        out.push_str(&text);
        at = end;
    }
    out.push_str(&sql[at..]);
    Some(out)
}

/// `sql` with each run of whitespace between tokens cut to one space, and nothing else changed: strings, quoted
/// identifiers and comments (planner hints among them) stay as written, so PostgreSQL reads the same tokens. For
/// statements too long to keep whole (machine-formatted text indents heavily: TPC-DS Q8 is 19 KB as written and
/// 4.2 KB compacted). `None` when `sql` has a backslash: with `standard_conforming_strings` off a plain string can
/// escape its quote with one, and the token boundaries could then be wrong.
pub(crate) fn compact(sql: &str) -> Option<String> {
    if sql.contains('\\') {
        return None;
    }
    let sql = sql.trim();
    let mut out = String::with_capacity(sql.len());
    let mut at = 0;
    for t in lex(sql) {
        let gap = &sql[at..t.start];
        if !gap.bytes().all(|b| b.is_ascii_whitespace()) {
            out.push_str(gap);
        } else if !gap.is_empty() && at > 0 {
            out.push(' ');
        }
        out.push_str(&sql[t.start..t.end]);
        at = t.end;
    }
    let rest = &sql[at..];
    if !rest.bytes().all(|b| b.is_ascii_whitespace()) {
        out.push_str(rest);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacting_cuts_whitespace_between_tokens_only() {
        let sql = "  /*+ HashJoin(a b) */ SELECT  a,\n\t\t 'x   y' ,\"q   r\"\n  FROM t -- why  not\n  WHERE $d$ a   b $d$ <> ''\n";
        let c = compact(sql).unwrap();
        let expected =
            "/*+ HashJoin(a b) */ SELECT a, 'x   y' ,\"q   r\" FROM t -- why  not\n  WHERE $d$ a   b $d$ <> ''";
        assert_eq!(c, expected);
        let toks = |s: &str| lex(s).iter().map(|t| (t.kind, s[t.start..t.end].to_owned())).collect::<Vec<_>>();
        assert_eq!(toks(&c), toks(sql), "the same tokens");
        assert_eq!(compact("SELECT E'a\\'   b'"), None, "a backslash: left alone");
        assert_eq!(compact("SELECT a - -1, x-1").unwrap(), "SELECT a - -1, x-1", "adjacent tokens stay adjacent");
        let list = format!("SELECT 1 WHERE z IN ({})", vec!["\n                   '65084'"; 400].join(","));
        assert!(compact(&list).unwrap().len() * 3 < list.len());
    }

    fn kinds(sql: &str) -> Vec<(Tok, &str)> {
        lex(sql).iter().map(|t| (t.kind, &sql[t.start..t.end])).collect()
    }

    #[test]
    fn lexing_keeps_strings_identifiers_and_comments_apart() {
        let sql = "SELECT 'a''(b' , \"x)y\", E'\\')', $q$ ) $q$ -- (\n /* ( /* ) */ */ 1.5e-3 <= f(x)";
        assert_eq!(
            kinds(sql),
            [
                (Tok::Word, "SELECT"),
                (Tok::Str, "'a''(b'"),
                (Tok::Comma, ","),
                (Tok::Quoted, "\"x)y\""),
                (Tok::Comma, ","),
                (Tok::Str, "E'\\')'"),
                (Tok::Comma, ","),
                (Tok::Str, "$q$ ) $q$"),
                (Tok::Num, "1.5e-3"),
                (Tok::Other, "<="),
                (Tok::Word, "f"),
                (Tok::LParen, "("),
                (Tok::Word, "x"),
                (Tok::RParen, ")"),
            ]
        );
    }

    #[test]
    fn list_spans_cut_conjuncts_and_items_with_their_parentheses() {
        let sql = "select * from a x, (b) where (x.k = 1) and y between 1 and 2 and f(z) > (select 1) group by 1";
        let t = Text::new(sql);
        let at = |s: &str| sql.find(s).unwrap();
        let conj = t.list_spans(&[at("x.k"), at("y between"), at("f(z)")], "where", None, &AFTER_WHERE).unwrap();
        let texts: Vec<&str> = conj.iter().map(|&(s, e)| &sql[s..e]).collect();
        assert_eq!(texts, ["(x.k = 1)", "y between 1 and 2", "f(z) > (select 1)"]);
        let from = t.list_spans(&[at("a x"), at("b)")], "from", Some(Tok::Comma), &["where"]).unwrap();
        let texts: Vec<&str> = from.iter().map(|&(s, e)| &sql[s..e]).collect();
        assert_eq!(texts, ["a x", "(b)"]);
        assert_eq!(t.parens_at(at("(select 1)")).map(|(s, e)| &sql[s..e]), Some("(select 1)"));
        assert_eq!(t.call_at(at("f(z)")).map(|(s, e)| &sql[s..e]), Some("f(z)"));
        assert_eq!(t.keyword_before(at("x.k"), "where"), Some(at("where")));
        // Not a list of that shape: no spans.
        assert!(t.list_spans(&[at("y between")], "where", None, &AFTER_WHERE).is_none());
    }

    #[test]
    fn edits_apply_in_order_and_overlaps_are_refused() {
        let sql = "0123456789";
        assert_eq!(apply(sql, vec![(5, 6, "x".into()), (1, 1, "ab".into())]).unwrap(), "0ab1234x6789");
        assert!(apply(sql, vec![(1, 5, String::new()), (3, 4, String::new())]).is_none());
    }
}
