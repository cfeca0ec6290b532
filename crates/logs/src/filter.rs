//! CloudWatch Logs filter patterns: terms (`ERROR`), quoted phrases (`"timed out"`),
//! exclusions (`-DEBUG`), alternatives (`?ERROR ?WARN`), and JSON patterns
//! (`{ $.level = "error" && $.latency > 100 }`, with `||`, parentheses, `*` in string
//! values, `IS NULL`, `NOT EXISTS`). Space-delimited (`[a, b]`) patterns are not read.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    All,
    Terms {
        required: Vec<String>,
        any: Vec<String>,
        excluded: Vec<String>,
    },
    Json(Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(Vec<Step>, Op, Literal),
    IsNull(Vec<Step>),
    NotExists(Vec<Step>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Field(String),
    Index(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
    Null,
}

/// CloudWatch Logs' limit on a pattern's length, in characters.
const MAX_PATTERN: usize = 1024;
/// How deep parentheses may nest: the parser recurses once per level, and a
/// 1024-character pattern could otherwise nest past what a thread's stack holds.
const MAX_NESTING: usize = 64;

fn invalid(pattern: &str) -> String {
    format!("Invalid filter pattern: {pattern}")
}

impl Filter {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.chars().count() > MAX_PATTERN {
            return Err(format!(
                "Invalid filter pattern: longer than {MAX_PATTERN} characters"
            ));
        }
        let trimmed = pattern.trim();
        if trimmed.is_empty() {
            return Ok(Filter::All);
        }
        if let Some(body) = trimmed.strip_prefix('{') {
            let body = body.strip_suffix('}').ok_or_else(|| invalid(pattern))?;
            let tokens = tokenize(body).ok_or_else(|| invalid(pattern))?;
            let mut parser = Parser {
                tokens,
                at: 0,
                depth: 0,
            };
            let expr = parser.or().ok_or_else(|| invalid(pattern))?;
            if parser.at != parser.tokens.len() {
                return Err(invalid(pattern));
            }
            return Ok(Filter::Json(expr));
        }
        if trimmed.starts_with('[') {
            return Err(format!(
                "Space-delimited filter patterns are not supported by nimbus: {pattern}"
            ));
        }
        let (mut required, mut any, mut excluded) = (Vec::new(), Vec::new(), Vec::new());
        let mut chars = trimmed.chars().peekable();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                chars.next();
                continue;
            }
            let kind = match c {
                '-' | '?' => {
                    chars.next();
                    c
                }
                _ => ' ',
            };
            let term: String = if chars.peek() == Some(&'"') {
                chars.next();
                let phrase: String = chars.by_ref().take_while(|&c| c != '"').collect();
                phrase
            } else {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                word
            };
            if term.is_empty() {
                return Err(invalid(pattern));
            }
            match kind {
                '-' => excluded.push(term),
                '?' => any.push(term),
                _ => required.push(term),
            }
        }
        Ok(Filter::Terms {
            required,
            any,
            excluded,
        })
    }

    pub fn matches(&self, message: &str) -> bool {
        match self {
            Filter::All => true,
            Filter::Terms {
                required,
                any,
                excluded,
            } => {
                required.iter().all(|t| message.contains(t.as_str()))
                    && (any.is_empty() || any.iter().any(|t| message.contains(t.as_str())))
                    && !excluded.iter().any(|t| message.contains(t.as_str()))
            }
            Filter::Json(expr) => serde_json::from_str::<Value>(message.trim())
                .is_ok_and(|value| value.is_object() && expr.holds(&value)),
        }
    }
}

fn select<'a>(value: &'a Value, path: &[Step]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, step| match step {
        Step::Field(name) => value.get(name),
        Step::Index(i) => value.get(i),
    })
}

/// `*` in a pattern matches any run of characters.
fn like(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

impl Expr {
    fn holds(&self, value: &Value) -> bool {
        match self {
            Expr::And(a, b) => a.holds(value) && b.holds(value),
            Expr::Or(a, b) => a.holds(value) || b.holds(value),
            Expr::IsNull(path) => select(value, path).is_some_and(Value::is_null),
            Expr::NotExists(path) => select(value, path).is_none(),
            Expr::Compare(path, op, literal) => {
                let Some(found) = select(value, path) else {
                    return false;
                };
                match literal {
                    Literal::Number(n) => {
                        let Some(x) = found.as_f64() else {
                            return false;
                        };
                        match op {
                            Op::Eq => x == *n,
                            Op::Ne => x != *n,
                            Op::Lt => x < *n,
                            Op::Le => x <= *n,
                            Op::Gt => x > *n,
                            Op::Ge => x >= *n,
                        }
                    }
                    Literal::Text(text) => {
                        let equal = found.as_str().is_some_and(|s| like(text, s));
                        match op {
                            Op::Eq => equal,
                            Op::Ne => found.is_string() && !equal,
                            _ => false,
                        }
                    }
                    Literal::Bool(b) => match op {
                        Op::Eq => found.as_bool() == Some(*b),
                        Op::Ne => found.as_bool().is_some_and(|x| x != *b),
                        _ => false,
                    },
                    Literal::Null => match op {
                        Op::Eq => found.is_null(),
                        Op::Ne => !found.is_null(),
                        _ => false,
                    },
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Path(Vec<Step>),
    Op(Op),
    Text(String),
    Word(String),
    And,
    Or,
    Open,
    Close,
}

fn parse_path(text: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    let rest = text.strip_prefix('$')?;
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut name = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' || c == '[' {
                        break;
                    }
                    name.push(c);
                    chars.next();
                }
                if name.is_empty() {
                    return None;
                }
                steps.push(Step::Field(name));
            }
            '[' => {
                let index: String = chars.by_ref().take_while(|&c| c != ']').collect();
                steps.push(Step::Index(index.trim().parse().ok()?));
            }
            _ => return None,
        }
    }
    Some(steps)
}

fn tokenize(text: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            '&' if next == Some('&') => {
                tokens.push(Token::And);
                i += 2;
            }
            '|' if next == Some('|') => {
                tokens.push(Token::Or);
                i += 2;
            }
            '=' => {
                tokens.push(Token::Op(Op::Eq));
                i += 1;
            }
            '!' if next == Some('=') => {
                tokens.push(Token::Op(Op::Ne));
                i += 2;
            }
            '<' | '>' => {
                let op = match (c, next == Some('=')) {
                    ('<', true) => Op::Le,
                    ('<', false) => Op::Lt,
                    ('>', true) => Op::Ge,
                    _ => Op::Gt,
                };
                tokens.push(Token::Op(op));
                i += if next == Some('=') { 2 } else { 1 };
            }
            '"' => {
                let end = chars[i + 1..].iter().position(|&c| c == '"')? + i + 1;
                tokens.push(Token::Text(chars[i + 1..end].iter().collect()));
                i = end + 1;
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !"()=!<>&|\"".contains(chars[i])
                {
                    i += 1;
                }
                if start == i {
                    return None;
                }
                let word: String = chars[start..i].iter().collect();
                if word.starts_with('$') {
                    tokens.push(Token::Path(parse_path(&word)?));
                } else {
                    tokens.push(Token::Word(word));
                }
            }
        }
    }
    Some(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Parentheses open around the token at `at`.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn or(&mut self) -> Option<Expr> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Some(left)
    }

    fn and(&mut self) -> Option<Expr> {
        let mut left = self.primary()?;
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            left = Expr::And(Box::new(left), Box::new(self.primary()?));
        }
        Some(left)
    }

    fn primary(&mut self) -> Option<Expr> {
        match self.next()? {
            Token::Open if self.depth < MAX_NESTING => {
                self.depth += 1;
                let inner = self.or()?;
                self.depth -= 1;
                (self.next()? == Token::Close).then_some(inner)
            }
            Token::Path(path) => match self.next()? {
                Token::Op(op) => {
                    let literal = match self.next()? {
                        Token::Text(text) => Literal::Text(text),
                        Token::Word(word) => match word.as_str() {
                            "true" => Literal::Bool(true),
                            "false" => Literal::Bool(false),
                            "NULL" | "null" => Literal::Null,
                            number => match number.parse() {
                                Ok(n) => Literal::Number(n),
                                Err(_) => Literal::Text(word),
                            },
                        },
                        _ => return None,
                    };
                    Some(Expr::Compare(path, op, literal))
                }
                Token::Word(word) if word == "IS" => match self.next()? {
                    Token::Word(null) if null == "NULL" => Some(Expr::IsNull(path)),
                    _ => None,
                },
                Token::Word(word) if word == "NOT" => match self.next()? {
                    Token::Word(exists) if exists == "EXISTS" => Some(Expr::NotExists(path)),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, message: &str) -> bool {
        Filter::parse(pattern).unwrap().matches(message)
    }

    #[test]
    fn terms_phrases_exclusions_and_alternatives() {
        assert!(matches("", "anything"));
        assert!(matches("ERROR", "[ERROR] disk full"));
        assert!(
            !matches("ERROR", "[error] disk full"),
            "terms are case-sensitive"
        );
        assert!(matches("ERROR disk", "[ERROR] disk full"));
        assert!(!matches("ERROR memory", "[ERROR] disk full"));
        assert!(matches("\"disk full\"", "[ERROR] disk full"));
        assert!(!matches("\"full disk\"", "[ERROR] disk full"));
        assert!(matches("ERROR -retrying", "[ERROR] disk full"));
        assert!(!matches("ERROR -disk", "[ERROR] disk full"));
        assert!(matches("?ERROR ?WARN", "[WARN] slow"));
        assert!(!matches("?ERROR ?WARN", "[INFO] ok"));
    }

    #[test]
    fn json_patterns() {
        let event = r#"{"level":"error","latency":250,"user":{"id":"u-1"},"tags":["a","b"],"ok":false,"gone":null}"#;
        assert!(matches(r#"{ $.level = "error" }"#, event));
        assert!(matches(r#"{ $.level = "err*" }"#, event));
        assert!(!matches(r#"{ $.level = "warn" }"#, event));
        assert!(matches(r#"{ $.level != "warn" }"#, event));
        assert!(matches(
            r#"{ $.latency > 100 && $.user.id = "u-1" }"#,
            event
        ));
        assert!(!matches(r#"{ $.latency >= 300 }"#, event));
        assert!(matches(r#"{ $.latency >= 300 || $.tags[1] = "b" }"#, event));
        assert!(matches(
            r#"{ ($.latency < 10 || $.ok = false) && $.level = "error" }"#,
            event
        ));
        assert!(matches(r#"{ $.gone IS NULL }"#, event));
        assert!(matches(r#"{ $.missing NOT EXISTS }"#, event));
        assert!(!matches(r#"{ $.level = "error" }"#, "not json"));
        for bad in ["{ $.level = }", "{ level = 1 }", "{ $.a = 1", "[a, b]"] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }

    /// Found by the filter fuzz target: a pattern nested a thousand deep (closed or
    /// not) overflowed the parser's stack, which aborts the whole server.
    #[test]
    fn patterns_are_bounded_as_in_cloudwatch() {
        let nested = |depth: usize| format!("{{{}$.ab=1{}}}", "(".repeat(depth), ")".repeat(depth));
        assert!(matches(&nested(MAX_NESTING), r#"{"ab":1}"#));
        assert!(Filter::parse(&nested(MAX_NESTING + 1)).is_err());
        assert!(Filter::parse(&format!("{{{}", "(".repeat(1022))).is_err());
        assert!(Filter::parse(&nested(100_000)).is_err());
        let chain = format!("{{ {} }}", vec!["$.a = 1"; 100_000].join(" && "));
        assert!(Filter::parse(&chain).is_err());
    }
}
