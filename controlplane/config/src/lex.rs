//! The tokenizer and token cursor shared by every statement-file parser.
//!
//! All of gatekey's configuration files use the z/OS statement syntax:
//! whitespace-separated words, `{` `}` blocks, and comments that run to the end
//! of the line (`#` in iked.conf, nssd.conf and the IPsec policy file; `;` in
//! the TCP/IP profile's `IPSEC … ENDIPSEC` block). A value that contains blanks
//! or comment characters can be written in double quotes (`"a b"`, with `\"`
//! and `\\` as escapes).
//!
//! Every token carries its 1-based line and column so that a parser can report
//! `file:line:column: what was expected`.

use std::fmt;
use std::sync::Arc;

/// A 1-based position in a source file (column counted in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    /// Line number, starting at 1.
    pub line: u32,
    /// Column number, starting at 1.
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// Which character starts a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentStyle {
    /// `#` to the end of the line (iked.conf, nssd.conf, policy files).
    Hash,
    /// `;` to the end of the line (the TCP/IP profile).
    Semicolon,
}

/// The kind of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A bare word: any run of characters other than blanks, braces, quotes
    /// and the comment character.
    Word,
    /// A double-quoted string; `text` holds the unescaped contents.
    Quoted,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
}

/// One token with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// What kind of token this is.
    pub kind: TokenKind,
    /// The token's text (unescaped for quoted strings; `{`/`}` for braces).
    pub text: String,
    /// Where the token starts.
    pub pos: Pos,
}

impl Token {
    /// True for a word or quoted string (a value).
    pub fn is_value(&self) -> bool {
        matches!(self.kind, TokenKind::Word | TokenKind::Quoted)
    }

    /// True if this is a bare word equal to `name`, ignoring ASCII case.
    pub fn is_word(&self, name: &str) -> bool {
        self.kind == TokenKind::Word && self.text.eq_ignore_ascii_case(name)
    }

    /// True if this is a bare word that matches the z/OS keyword `pattern`
    /// (see [`keyword_matches`]).
    pub fn is_keyword(&self, pattern: &str) -> bool {
        self.kind == TokenKind::Word && keyword_matches(&self.text, pattern)
    }
}

/// A located error in a source file: `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{pos}: {message}")]
pub struct Diagnostic {
    /// The file name as given to the parser.
    pub file: Arc<str>,
    /// Where the problem is.
    pub pos: Pos,
    /// What is wrong and, where possible, what was expected.
    pub message: String,
}

/// Does `word` match the z/OS keyword `pattern`, case-insensitively and with
/// the documented abbreviation rule?
///
/// z/OS syntax diagrams spell the shortest accepted abbreviation in capitals
/// and the optional rest in lower case: `LOGENable` accepts `LOGEN`, `logena`
/// and `LOGENABLE` but not `LOGE`. Digits and other non-lowercase characters
/// in the leading run count as required (`IPSEC6Rule` needs `IPSEC6R`). A
/// pattern written entirely in capitals must be given in full.
pub fn keyword_matches(word: &str, pattern: &str) -> bool {
    let required = pattern
        .chars()
        .take_while(|c| !c.is_ascii_lowercase())
        .count();
    let wlen = word.chars().count();
    let plen = pattern.chars().count();
    if wlen < required || wlen > plen {
        return false;
    }
    word.chars()
        .zip(pattern.chars())
        .all(|(w, p)| w.eq_ignore_ascii_case(&p))
}

/// Split `src` into tokens.
///
/// `file` is only used to label errors. The only lexical errors are an
/// unterminated quoted string and a control character other than tab.
pub fn tokenize(file: &str, src: &str, style: CommentStyle) -> Result<Vec<Token>, Diagnostic> {
    let comment = match style {
        CommentStyle::Hash => '#',
        CommentStyle::Semicolon => ';',
    };
    let file: Arc<str> = Arc::from(file);
    let mut out = Vec::new();
    let mut line: u32 = 1;
    let mut col: u32 = 0;
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        col += 1;
        let pos = Pos { line, col };
        match c {
            '\n' => {
                line += 1;
                col = 0;
            }
            ' ' | '\t' | '\r' => {}
            c if c == comment => {
                while let Some(&n) = chars.peek() {
                    if n == '\n' {
                        break;
                    }
                    chars.next();
                }
            }
            '{' => out.push(Token {
                kind: TokenKind::LBrace,
                text: "{".into(),
                pos,
            }),
            '}' => out.push(Token {
                kind: TokenKind::RBrace,
                text: "}".into(),
                pos,
            }),
            '"' => {
                let mut text = String::new();
                let mut closed = false;
                while let Some(n) = chars.next() {
                    col += 1;
                    match n {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some(e @ ('"' | '\\')) => {
                                col += 1;
                                text.push(e);
                            }
                            Some('\n') | None => break,
                            Some(e) => {
                                col += 1;
                                text.push('\\');
                                text.push(e);
                            }
                        },
                        '\n' => break,
                        n => text.push(n),
                    }
                }
                if !closed {
                    return Err(Diagnostic {
                        file,
                        pos,
                        message:
                            "unterminated quoted string (a closing \" is missing on this line)"
                                .into(),
                    });
                }
                out.push(Token {
                    kind: TokenKind::Quoted,
                    text,
                    pos,
                });
            }
            c if c.is_control() => {
                return Err(Diagnostic {
                    file,
                    pos,
                    message: format!("unexpected control character U+{:04X}", u32::from(c)),
                });
            }
            c => {
                let mut text = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || n == '{' || n == '}' || n == '"' || n == comment {
                        break;
                    }
                    if n.is_control() {
                        break;
                    }
                    text.push(n);
                    chars.next();
                    col += 1;
                }
                out.push(Token {
                    kind: TokenKind::Word,
                    text,
                    pos,
                });
            }
        }
    }
    Ok(out)
}

/// A cursor over a token list with helpers that produce located errors.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    file: Arc<str>,
    toks: &'a [Token],
    next: usize,
    /// Position just past the last token (for "unexpected end of file").
    end: Pos,
}

impl<'a> Cursor<'a> {
    /// A cursor at the first of `toks`; `file` labels errors and `end` is
    /// where an "unexpected end of file" error points (e.g. the last line).
    pub fn new(file: &str, toks: &'a [Token], end: Pos) -> Self {
        Cursor {
            file: Arc::from(file),
            toks,
            next: 0,
            end,
        }
    }

    /// A cursor over `toks` whose end-of-file position is derived from `src`.
    pub fn for_source(file: &str, src: &str, toks: &'a [Token]) -> Self {
        Self::new(file, toks, end_pos(src))
    }

    /// The file name used in errors.
    pub fn file(&self) -> &Arc<str> {
        &self.file
    }

    /// The next token, without consuming it.
    pub fn peek(&self) -> Option<&'a Token> {
        self.toks.get(self.next)
    }

    /// The token after the next one, without consuming anything.
    pub fn peek2(&self) -> Option<&'a Token> {
        self.toks.get(self.next + 1)
    }

    /// The most recently consumed token.
    pub fn prev(&self) -> Option<&'a Token> {
        self.next.checked_sub(1).and_then(|i| self.toks.get(i))
    }

    /// Consume and return the next token.
    #[expect(
        clippy::should_implement_trait,
        reason = "a cursor is not an iterator: it also peeks and rewinds"
    )]
    pub fn next(&mut self) -> Option<&'a Token> {
        let t = self.toks.get(self.next)?;
        self.next += 1;
        Some(t)
    }

    /// True when every token has been consumed.
    pub fn at_end(&self) -> bool {
        self.next >= self.toks.len()
    }

    /// The index of the next token (for [`Cursor::rewind`]).
    pub fn mark(&self) -> usize {
        self.next
    }

    /// Go back to a position returned by [`Cursor::mark`].
    pub fn rewind(&mut self, mark: usize) {
        self.next = mark.min(self.toks.len());
    }

    /// Where the next token is, or the end of the file.
    pub fn pos(&self) -> Pos {
        self.peek().map_or(self.end, |t| t.pos)
    }

    /// True if the next token exists and is on the same line as the last
    /// consumed one (for line-oriented parameters).
    pub fn on_same_line(&self) -> bool {
        match (self.prev(), self.peek()) {
            (Some(p), Some(n)) => p.pos.line == n.pos.line,
            _ => false,
        }
    }

    /// An error at `pos`.
    pub fn error_at(&self, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            pos,
            message: message.into(),
        }
    }

    /// An error at the next token (or at the end of the file).
    pub fn error_here(&self, message: impl Into<String>) -> Diagnostic {
        self.error_at(self.pos(), message)
    }

    /// Describe the next token for an error message: `'xyz'` or `end of file`.
    pub fn describe_next(&self) -> String {
        match self.peek() {
            Some(t) => format!("'{}'", t.text),
            None => "end of file".into(),
        }
    }

    /// Consume the next token if it is a word matching the z/OS keyword
    /// `pattern` (see [`keyword_matches`]).
    pub fn eat_keyword(&mut self, pattern: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_keyword(pattern)) {
            self.next += 1;
            true
        } else {
            false
        }
    }

    /// Consume the next token if it is a word equal to `name` ignoring case.
    pub fn eat_word(&mut self, name: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_word(name)) {
            self.next += 1;
            true
        } else {
            false
        }
    }

    /// Consume the next token if it is `kind`.
    pub fn eat(&mut self, kind: TokenKind) -> bool {
        if self.peek().is_some_and(|t| t.kind == kind) {
            self.next += 1;
            true
        } else {
            false
        }
    }

    /// Consume a value (word or quoted string); `what` names it in the error.
    pub fn expect_value(&mut self, what: &str) -> Result<&'a Token, Diagnostic> {
        match self.peek() {
            Some(t) if t.is_value() => {
                self.next += 1;
                Ok(t)
            }
            _ => Err(self.error_here(format!("expected {what}, found {}", self.describe_next()))),
        }
    }

    /// Consume a value on the same line as the previous token.
    pub fn expect_value_on_line(&mut self, what: &str) -> Result<&'a Token, Diagnostic> {
        if !self.on_same_line() {
            let pos = self.prev().map_or(self.pos(), |p| Pos {
                line: p.pos.line,
                col: p.pos.col + u32::try_from(p.text.chars().count()).unwrap_or(0),
            });
            return Err(self.error_at(pos, format!("expected {what} on this line")));
        }
        self.expect_value(what)
    }

    /// Consume the z/OS keyword `pattern` or fail naming it.
    pub fn expect_keyword(&mut self, pattern: &str) -> Result<&'a Token, Diagnostic> {
        match self.peek() {
            Some(t) if t.is_keyword(pattern) => {
                self.next += 1;
                Ok(t)
            }
            _ => Err(self.error_here(format!(
                "expected {pattern}, found {}",
                self.describe_next()
            ))),
        }
    }

    /// Consume `{` or fail.
    pub fn expect_lbrace(&mut self) -> Result<&'a Token, Diagnostic> {
        self.expect_kind(TokenKind::LBrace, "'{'")
    }

    /// Consume `}` or fail.
    pub fn expect_rbrace(&mut self) -> Result<&'a Token, Diagnostic> {
        self.expect_kind(TokenKind::RBrace, "'}'")
    }

    fn expect_kind(&mut self, kind: TokenKind, what: &str) -> Result<&'a Token, Diagnostic> {
        match self.peek() {
            Some(t) if t.kind == kind => {
                self.next += 1;
                Ok(t)
            }
            _ => Err(self.error_here(format!("expected {what}, found {}", self.describe_next()))),
        }
    }

    /// Consume a value and parse it as an unsigned integer in `min..=max`.
    pub fn expect_u32_in(&mut self, what: &str, min: u32, max: u32) -> Result<u32, Diagnostic> {
        let t = self.expect_value(what)?;
        parse_u32_in(&self.file, t, what, min, max)
    }

    /// Consume every remaining token on the current line (the line of the
    /// previously consumed token) and return them.
    pub fn rest_of_line(&mut self) -> &'a [Token] {
        let start = self.next;
        while self.on_same_line() {
            self.next += 1;
        }
        self.toks.get(start..self.next).unwrap_or(&[])
    }

    /// Skip to just after the matching `}` of a block whose `{` has already
    /// been consumed (for error recovery). Returns false at end of file.
    pub fn skip_block(&mut self) -> bool {
        let mut depth = 1usize;
        while let Some(t) = self.next() {
            match t.kind {
                TokenKind::LBrace => depth += 1,
                TokenKind::RBrace => {
                    depth -= 1;
                    if depth == 0 {
                        return true;
                    }
                }
                _ => {}
            }
        }
        false
    }
}

/// Parse `tok` as an unsigned integer in `min..=max`, with a located error.
pub fn parse_u32_in(
    file: &Arc<str>,
    tok: &Token,
    what: &str,
    min: u32,
    max: u32,
) -> Result<u32, Diagnostic> {
    let err = || Diagnostic {
        file: file.clone(),
        pos: tok.pos,
        message: format!(
            "{what} must be a whole number from {min} to {max}, found '{}'",
            tok.text
        ),
    };
    if tok.kind != TokenKind::Word || !tok.text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let v: u32 = tok.text.parse().map_err(|_| err())?;
    if v < min || v > max {
        return Err(err());
    }
    Ok(v)
}

/// The position just after the last character of `src`.
pub fn end_pos(src: &str) -> Pos {
    let mut line = 1u32;
    let mut col = 0u32;
    for c in src.chars() {
        if c == '\n' {
            line += 1;
            col = 0;
        } else {
            col += 1;
        }
    }
    Pos { line, col: col + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(src: &str, style: CommentStyle) -> Vec<(TokenKind, String, u32, u32)> {
        tokenize("t.conf", src, style)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|t| (t.kind, t.text, t.pos.line, t.pos.col))
            .collect()
    }

    #[test]
    fn words_braces_comments_and_positions() {
        let src = "IkeConfig\n{ # comment\n  IkeRetries 6\n}\n";
        let w = words(src, CommentStyle::Hash);
        assert_eq!(
            w,
            vec![
                (TokenKind::Word, "IkeConfig".into(), 1, 1),
                (TokenKind::LBrace, "{".into(), 2, 1),
                (TokenKind::Word, "IkeRetries".into(), 3, 3),
                (TokenKind::Word, "6".into(), 3, 14),
                (TokenKind::RBrace, "}".into(), 4, 1),
            ]
        );
    }

    #[test]
    fn braces_split_words_and_semicolon_comments() {
        let w = words("a{b}c ; x y\nIPSECRule * *", CommentStyle::Semicolon);
        let texts: Vec<_> = w.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(texts, ["a", "{", "b", "}", "c", "IPSECRule", "*", "*"]);
        // '#' is an ordinary character in the profile.
        let w = words("a#b", CommentStyle::Semicolon);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn quoted_strings() {
        let w = words(r#"Password "se cret # \"x\" \\ \n""#, CommentStyle::Hash);
        assert_eq!(w[1].0, TokenKind::Quoted);
        assert_eq!(w[1].1, r#"se cret # "x" \ \n"#);
        let e = tokenize("f", "a \"open\nb", CommentStyle::Hash).unwrap_err();
        assert_eq!(e.pos, Pos { line: 1, col: 3 });
        assert_eq!(
            e.to_string().split(':').take(3).collect::<Vec<_>>(),
            ["f", "1", "3"]
        );
    }

    #[test]
    fn control_characters_are_rejected() {
        let e = tokenize("f", "ab\u{1}", CommentStyle::Hash).unwrap_err();
        assert_eq!(e.pos, Pos { line: 1, col: 3 });
    }

    #[test]
    fn keyword_abbreviations() {
        assert!(keyword_matches("LOGEN", "LOGENable"));
        assert!(keyword_matches("logenable", "LOGENable"));
        assert!(keyword_matches("LogEna", "LOGENable"));
        assert!(!keyword_matches("LOGE", "LOGENable"));
        assert!(!keyword_matches("LOGENABLED", "LOGENable"));
        assert!(keyword_matches("ipsec6r", "IPSEC6Rule"));
        assert!(!keyword_matches("IPSEC6", "IPSEC6Rule"));
        assert!(keyword_matches("INB", "INBound"));
        assert!(!keyword_matches("INB", "INBConnect"));
        assert!(keyword_matches("TCP", "TCP"));
        assert!(!keyword_matches("TC", "TCP"));
    }

    #[test]
    fn cursor_helpers() {
        let src = "A 1 2\nB {\n x }\n";
        let toks = tokenize("c.conf", src, CommentStyle::Hash).unwrap_or_default();
        let mut c = Cursor::for_source("c.conf", src, &toks);
        assert!(c.eat_word("a"));
        assert_eq!(c.expect_u32_in("count", 0, 5).ok(), Some(1));
        let rest: Vec<_> = c.rest_of_line().iter().map(|t| t.text.clone()).collect();
        assert_eq!(rest, ["2"]);
        assert!(c.eat_keyword("B"));
        let e = c.expect_value_on_line("a value").unwrap_err();
        assert_eq!(e.pos.line, 2);
        assert!(c.expect_lbrace().is_ok());
        assert!(c.skip_block());
        assert!(c.at_end());
        let e = c.expect_rbrace().unwrap_err();
        assert_eq!(e.to_string(), "c.conf:4:1: expected '}', found end of file");
    }

    #[test]
    fn numbers_are_checked() {
        let toks = tokenize("n", "70000 x 5", CommentStyle::Hash).unwrap_or_default();
        let mut c = Cursor::new("n", &toks, Pos::default());
        let e = c.expect_u32_in("Port", 1, 65535).unwrap_err();
        assert!(
            e.message
                .contains("Port must be a whole number from 1 to 65535")
        );
        assert!(c.expect_u32_in("Port", 1, 65535).is_err());
        assert_eq!(c.expect_u32_in("n", 1, 9).ok(), Some(5));
    }
}
