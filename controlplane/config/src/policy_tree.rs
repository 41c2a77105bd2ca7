//! A generic statement tree for the IPsec policy file.
//!
//! The Policy Agent syntax is line-oriented: each line holds one keyword and
//! its values, and a `{ … }` block (opening on the same or the next line)
//! holds nested parameters or inline statements:
//!
//! ```text
//! IpFilterRule NssTrafficIPv4        <- key "IpFilterRule", values ["NssTrafficIPv4"]
//! {                                  <- its block
//!   IpSourceAddr all4                <- child: key, values ["all4"]
//!   IpService { Protocol tcp }       <- child with its own block
//! }
//! ```
//!
//! [`parse_tree`] builds that tree without knowing any keyword; each
//! statement family then converts the nodes it owns into typed values
//! ([`crate::filter_policy`] for the filter statements). Statement parsers of
//! other families can use the same tree and skip what is not theirs.

use std::sync::Arc;

use crate::lex::{Diagnostic, Pos, Token, TokenKind};

/// One statement or parameter: `Keyword value… [{ children }]`.
#[derive(Debug, Clone)]
pub struct Node<'a> {
    /// The keyword.
    pub key: &'a Token,
    /// The values on the keyword's line (words or quoted strings).
    pub values: Vec<&'a Token>,
    /// The block, if one follows.
    pub block: Option<Block<'a>>,
}

/// A `{ … }` block.
#[derive(Debug, Clone)]
pub struct Block<'a> {
    /// Where `{` is.
    pub open: Pos,
    /// Where `}` is.
    pub close: Pos,
    /// The nodes inside, in order.
    pub children: Vec<Node<'a>>,
}

impl<'a> Node<'a> {
    /// True if the keyword is `name`, ignoring ASCII case.
    pub fn is(&self, name: &str) -> bool {
        self.key.is_word(name)
    }

    /// The first value, if any.
    pub fn first(&self) -> Option<&'a Token> {
        self.values.first().copied()
    }

    /// The children of the block (empty without a block).
    pub fn children(&self) -> &[Node<'a>] {
        self.block.as_ref().map_or(&[], |b| b.children.as_slice())
    }

    /// Where the node ends: its `}` or its last value or keyword.
    pub fn end(&self) -> Pos {
        match &self.block {
            Some(b) => b.close,
            None => self.values.last().map_or(self.key.pos, |t| t.pos),
        }
    }
}

/// Build the statement tree of a token list. Structural errors (a stray `}`,
/// an unclosed `{`, a block without a keyword, a quoted keyword) are
/// collected in `errors`; the tree holds everything that could be read.
pub fn parse_tree<'a>(
    file: &str,
    toks: &'a [Token],
    end: Pos,
    errors: &mut Vec<Diagnostic>,
) -> Vec<Node<'a>> {
    let mut p = TreeParser {
        file: Arc::from(file),
        toks,
        next: 0,
        end,
        errors,
    };
    p.nodes(None)
}

struct TreeParser<'a, 'e> {
    file: Arc<str>,
    toks: &'a [Token],
    next: usize,
    end: Pos,
    errors: &'e mut Vec<Diagnostic>,
}

impl<'a> TreeParser<'a, '_> {
    fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            file: self.file.clone(),
            pos,
            message: message.into(),
        });
    }

    /// Nodes until the matching `}` (inside a block opened at `open`) or the
    /// end of the tokens (top level). Consumes the `}`; returns its position
    /// through `self.next`'s previous token.
    fn nodes(&mut self, open: Option<Pos>) -> Vec<Node<'a>> {
        let mut out = Vec::new();
        loop {
            let Some(t) = self.toks.get(self.next) else {
                if let Some(open) = open {
                    self.err(open, "this '{' is not closed (a '}' is missing)");
                }
                return out;
            };
            match t.kind {
                TokenKind::RBrace => {
                    self.next += 1;
                    if open.is_some() {
                        return out;
                    }
                    self.err(t.pos, "unexpected '}' (no block is open)");
                }
                TokenKind::LBrace => {
                    self.next += 1;
                    self.err(t.pos, "unexpected '{': a block must follow a keyword");
                    // Parse and drop the block so its contents do not
                    // produce follow-on errors.
                    let _ = self.nodes(Some(t.pos));
                }
                TokenKind::Quoted => {
                    self.next += 1;
                    self.err(
                        t.pos,
                        format!("expected a keyword, found the quoted string \"{}\"", t.text),
                    );
                }
                TokenKind::Word => {
                    self.next += 1;
                    out.push(self.node(t));
                }
            }
        }
    }

    fn node(&mut self, key: &'a Token) -> Node<'a> {
        let mut values = Vec::new();
        while let Some(t) = self.toks.get(self.next) {
            if !t.is_value() || t.pos.line != key.pos.line {
                break;
            }
            values.push(t);
            self.next += 1;
        }
        let block = match self.toks.get(self.next) {
            Some(t) if t.kind == TokenKind::LBrace => {
                self.next += 1;
                let children = self.nodes(Some(t.pos));
                let close = self
                    .next
                    .checked_sub(1)
                    .and_then(|i| self.toks.get(i))
                    .filter(|c| c.kind == TokenKind::RBrace)
                    .map_or(self.end, |c| c.pos);
                Some(Block {
                    open: t.pos,
                    close,
                    children,
                })
            }
            _ => None,
        };
        Node { key, values, block }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lex::{CommentStyle, end_pos, tokenize};

    fn tree(src: &str) -> (Vec<String>, Vec<String>) {
        let toks = tokenize("p", src, CommentStyle::Hash).unwrap();
        let mut errors = Vec::new();
        let nodes = parse_tree("p", &toks, end_pos(src), &mut errors);
        fn show(n: &Node<'_>) -> String {
            let mut s = n.key.text.clone();
            for v in &n.values {
                s.push(' ');
                s.push_str(&v.text);
            }
            if let Some(b) = &n.block {
                s.push_str(" {");
                for c in &b.children {
                    s.push(' ');
                    s.push_str(&show(c));
                    s.push(';');
                }
                s.push_str(" }");
            }
            s
        }
        (
            nodes.iter().map(show).collect(),
            errors.iter().map(ToString::to_string).collect(),
        )
    }

    #[test]
    fn blocks_on_the_same_or_next_line() {
        let (n, e) = tree(
            "IpFilterRule r1 # c\n{\n  IpSourceAddr all4\n  IpService { Protocol tcp\n Direction bidirectional InboundConnect }\n}\nIpGenericFilterAction p { IpFilterAction permit }\n",
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            n,
            [
                "IpFilterRule r1 { IpSourceAddr all4; IpService { Protocol tcp; Direction bidirectional InboundConnect; }; }",
                "IpGenericFilterAction p { IpFilterAction permit; }",
            ]
        );
    }

    #[test]
    fn structural_errors() {
        let (_, e) = tree("A {\n B 1\n");
        assert_eq!(e, ["p:1:3: this '{' is not closed (a '}' is missing)"]);
        let (n, e) = tree("}\nA 1\n{ x }\n\"q\" 2");
        assert_eq!(n, ["A 1 { x; }", "2"]);
        assert_eq!(
            e,
            [
                "p:1:1: unexpected '}' (no block is open)",
                "p:4:1: expected a keyword, found the quoted string \"q\""
            ]
        );
        let (_, e) = tree("{ A }");
        assert_eq!(e, ["p:1:1: unexpected '{': a block must follow a keyword"]);
    }
}
