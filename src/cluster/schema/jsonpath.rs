//! The JSONPath subset kubectl and CRD printer columns use: `.a.b`, `['a.b']`,
//! `[0]`, `[-1]`, `[1:3]`, `[*]`, `.*`, `..name`, and filters like
//! `[?(@.type=="Ready")]`. Hand-written because no maintained crate speaks
//! Kubernetes' dialect (`{}` wrapping, relative paths without `$`).

use serde_json::Value;

/// Why a JSONPath expression could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonPathError {
    /// The expression is malformed at the given byte offset.
    #[error("JSONPath `{expression}` is invalid at position {position}: {reason}")]
    Syntax {
        /// The whole expression.
        expression: String,
        /// Byte offset of the problem.
        position: usize,
        /// What was expected.
        reason: String,
    },
}

/// A parsed JSONPath expression.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Slice(Option<i64>, Option<i64>),
    Wildcard,
    /// `..`: this value and all its descendants.
    Descend,
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    left: JsonPath,
    comparison: Option<(Comparison, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Comparison {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

struct Parser<'a> {
    expression: &'a str,
    chars: Vec<(usize, char)>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, reason: impl Into<String>) -> JsonPathError {
        JsonPathError::Syntax {
            expression: self.expression.to_string(),
            position: self
                .chars
                .get(self.pos)
                .map_or(self.expression.len(), |c| c.0),
            reason: reason.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|c| c.1)
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).map(|c| c.1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += 1;
        c
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Parses steps until the end or a character in `stop` (outside brackets).
    fn steps(&mut self, stop: &[char]) -> Result<Vec<Step>, JsonPathError> {
        let mut steps = Vec::new();
        if self.peek() == Some('$') || self.peek() == Some('@') {
            self.pos += 1;
        }
        let mut first = true;
        while let Some(c) = self.peek() {
            if stop.contains(&c) {
                break;
            }
            match c {
                '.' if self.peek_at(1) == Some('.') => {
                    self.pos += 2;
                    steps.push(Step::Descend);
                    if self.peek() != Some('[') {
                        steps.push(self.name_step()?);
                    }
                }
                '.' => {
                    self.pos += 1;
                    if self.peek().is_none() && steps.is_empty() {
                        // A lone "." means the value itself.
                        break;
                    }
                    steps.push(self.name_step()?);
                }
                '[' => {
                    self.pos += 1;
                    steps.push(self.bracket_step()?);
                }
                _ if first => steps.push(self.name_step()?),
                _ => return Err(self.error(format!("unexpected `{c}`"))),
            }
            first = false;
        }
        Ok(steps)
    }

    fn name_step(&mut self) -> Result<Step, JsonPathError> {
        if self.peek() == Some('*') {
            self.pos += 1;
            return Ok(Step::Wildcard);
        }
        let mut name = String::new();
        while let Some(c) = self.peek() {
            match c {
                '\\' => {
                    self.pos += 1;
                    match self.bump() {
                        Some(escaped) => name.push(escaped),
                        None => return Err(self.error("dangling `\\`")),
                    }
                }
                '.' | '[' | ')' | ' ' | '=' | '!' | '<' | '>' | '}' => break,
                _ => {
                    name.push(c);
                    self.pos += 1;
                }
            }
        }
        if name.is_empty() {
            return Err(self.error("expected a field name"));
        }
        Ok(Step::Field(name))
    }

    fn quoted(&mut self) -> Result<String, JsonPathError> {
        let Some(quote) = self.bump() else {
            return Err(self.error("expected a quoted string"));
        };
        let mut text = String::new();
        loop {
            match self.bump() {
                Some('\\') => match self.bump() {
                    Some(c) => text.push(c),
                    None => return Err(self.error("unterminated string")),
                },
                Some(c) if c == quote => return Ok(text),
                Some(c) => text.push(c),
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    fn integer(&mut self) -> Option<i64> {
        let start = self.pos;
        if self.peek() == Some('-') {
            self.pos += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().map(|c| c.1).collect();
        match text.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                self.pos = start;
                None
            }
        }
    }

    fn consume(&mut self, c: char) -> Result<(), JsonPathError> {
        self.skip_spaces();
        if self.bump() == Some(c) {
            Ok(())
        } else {
            self.pos -= 1;
            Err(self.error(format!("expected `{c}`")))
        }
    }

    fn bracket_step(&mut self) -> Result<Step, JsonPathError> {
        self.skip_spaces();
        let step = match self.peek() {
            Some('*') => {
                self.pos += 1;
                Step::Wildcard
            }
            Some('\'' | '"') => Step::Field(self.quoted()?),
            Some('?') => {
                self.pos += 1;
                self.consume('(')?;
                self.skip_spaces();
                let filter = self.filter()?;
                self.consume(')')?;
                Step::Filter(filter)
            }
            _ => {
                let start = self.integer();
                self.skip_spaces();
                if self.peek() == Some(':') {
                    self.pos += 1;
                    self.skip_spaces();
                    let end = self.integer();
                    Step::Slice(start, end)
                } else {
                    match start {
                        Some(i) => Step::Index(i),
                        None => {
                            return Err(self.error("expected an index, `*`, a name or a filter"));
                        }
                    }
                }
            }
        };
        self.consume(']')?;
        Ok(step)
    }

    fn filter(&mut self) -> Result<Filter, JsonPathError> {
        if self.peek() != Some('@') {
            return Err(self.error("a filter starts with `@`"));
        }
        let left = JsonPath {
            steps: self.steps(&[' ', '=', '!', '<', '>', ')'])?,
        };
        self.skip_spaces();
        let comparison = match (self.peek(), self.peek_at(1)) {
            (Some('='), Some('=')) => Some((Comparison::Eq, 2)),
            (Some('!'), Some('=')) => Some((Comparison::Ne, 2)),
            (Some('<'), Some('=')) => Some((Comparison::Le, 2)),
            (Some('>'), Some('=')) => Some((Comparison::Ge, 2)),
            (Some('<'), _) => Some((Comparison::Lt, 1)),
            (Some('>'), _) => Some((Comparison::Gt, 1)),
            _ => None,
        };
        let Some((op, width)) = comparison else {
            return Ok(Filter {
                left,
                comparison: None,
            });
        };
        self.pos += width;
        self.skip_spaces();
        let literal = match self.peek() {
            Some('\'' | '"') => Value::String(self.quoted()?),
            _ => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c != ')' && !c.is_whitespace()) {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().map(|c| c.1).collect();
                serde_json::from_str::<Value>(&text)
                    .ok()
                    .filter(|v| v.is_number() || v.is_boolean() || v.is_null())
                    .ok_or_else(|| self.error(format!("`{text}` is not a literal")))?
            }
        };
        Ok(Filter {
            left,
            comparison: Some((op, literal)),
        })
    }
}

impl JsonPath {
    /// Parses `.status.conditions[?(@.type=="Ready")].status`, with or
    /// without kubectl's `{}` wrapping and a leading `$`.
    pub fn parse(expression: &str) -> Result<Self, JsonPathError> {
        let trimmed = expression.trim();
        let inner = trimmed
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or(trimmed);
        let mut parser = Parser {
            expression,
            chars: inner.char_indices().collect(),
            pos: 0,
        };
        let steps = parser.steps(&[])?;
        Ok(Self { steps })
    }

    /// Every value the path selects, in document order.
    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![root];
        for step in &self.steps {
            let mut next = Vec::new();
            for value in current {
                apply(step, value, &mut next);
            }
            current = next;
        }
        current
    }

    /// The first value the path selects, as printer columns use it.
    pub fn first<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.find(root).into_iter().next()
    }
}

fn descendants<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(value);
    match value {
        Value::Object(map) => map.values().for_each(|v| descendants(v, out)),
        Value::Array(items) => items.iter().for_each(|v| descendants(v, out)),
        _ => {}
    }
}

fn resolve_index(index: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let i = if index < 0 { len + index } else { index };
    (0..len).contains(&i).then_some(i as usize)
}

fn apply<'a>(step: &Step, value: &'a Value, out: &mut Vec<&'a Value>) {
    match step {
        Step::Field(name) => {
            if let Some(found) = value.get(name.as_str()) {
                out.push(found);
            }
        }
        Step::Index(i) => {
            if let Some(items) = value.as_array()
                && let Some(idx) = resolve_index(*i, items.len())
            {
                out.push(&items[idx]);
            }
        }
        Step::Slice(start, end) => {
            if let Some(items) = value.as_array() {
                let len = items.len() as i64;
                let clamp = |i: i64| (if i < 0 { len + i } else { i }).clamp(0, len) as usize;
                let from = start.map_or(0, clamp);
                let to = end.map_or(items.len(), clamp);
                if from < to {
                    out.extend(&items[from..to]);
                }
            }
        }
        Step::Wildcard => match value {
            Value::Object(map) => out.extend(map.values()),
            Value::Array(items) => out.extend(items),
            _ => {}
        },
        Step::Descend => descendants(value, out),
        Step::Filter(filter) => {
            let candidates: Vec<&Value> = match value {
                Value::Array(items) => items.iter().collect(),
                Value::Object(map) => map.values().collect(),
                _ => Vec::new(),
            };
            out.extend(candidates.into_iter().filter(|c| filter.accepts(c)));
        }
    }
}

impl Filter {
    fn accepts(&self, candidate: &Value) -> bool {
        let found = self.left.find(candidate);
        match &self.comparison {
            None => found
                .iter()
                .any(|v| !matches!(v, Value::Null | Value::Bool(false))),
            Some((op, literal)) => found.iter().any(|v| compare(v, *op, literal)),
        }
    }
}

fn compare(left: &Value, op: Comparison, right: &Value) -> bool {
    let ordering = match (left, right) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    };
    match (op, ordering) {
        (Comparison::Eq, Some(o)) => o.is_eq(),
        (Comparison::Ne, Some(o)) => o.is_ne(),
        (Comparison::Ne, None) => true,
        (Comparison::Lt, Some(o)) => o.is_lt(),
        (Comparison::Le, Some(o)) => o.is_le(),
        (Comparison::Gt, Some(o)) => o.is_gt(),
        (Comparison::Ge, Some(o)) => o.is_ge(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "p", "labels": {"app.kubernetes.io/name": "wine"}},
            "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]},
            "status": {"conditions": [
                {"type": "Scheduled", "status": "True"},
                {"type": "Ready", "status": "False", "count": 3}
            ]}
        })
    }

    fn find(path: &str, v: &Value) -> Vec<Value> {
        JsonPath::parse(path)
            .expect("test path parses")
            .find(v)
            .into_iter()
            .cloned()
            .collect()
    }

    #[test]
    fn simple_fields_with_and_without_wrapping() {
        let p = pod();
        assert_eq!(find(".metadata.name", &p), vec![json!("p")]);
        assert_eq!(find("{.metadata.name}", &p), vec![json!("p")]);
        assert_eq!(find("$.metadata.name", &p), vec![json!("p")]);
        assert_eq!(find("metadata.name", &p), vec![json!("p")]);
        assert!(find(".metadata.missing", &p).is_empty());
    }

    #[test]
    fn indices_slices_and_wildcards() {
        let p = pod();
        assert_eq!(find(".spec.containers[0].image", &p), vec![json!("x")]);
        assert_eq!(find(".spec.containers[-1].name", &p), vec![json!("b")]);
        assert_eq!(
            find(".spec.containers[*].name", &p),
            vec![json!("a"), json!("b")]
        );
        assert_eq!(find(".spec.containers[0:1].name", &p), vec![json!("a")]);
        assert!(find(".spec.containers[5].name", &p).is_empty());
        assert_eq!(find("..image", &p), vec![json!("x"), json!("y")]);
    }

    #[test]
    fn quoted_and_escaped_names_with_dots() {
        let p = pod();
        assert_eq!(
            find(".metadata.labels['app.kubernetes.io/name']", &p),
            vec![json!("wine")]
        );
        assert_eq!(
            find(r".metadata.labels.app\.kubernetes\.io/name", &p),
            vec![json!("wine")]
        );
    }

    #[test]
    fn filters_select_list_entries() {
        let p = pod();
        assert_eq!(
            find(r#".status.conditions[?(@.type=="Ready")].status"#, &p),
            vec![json!("False")]
        );
        assert_eq!(
            find(".status.conditions[?(@.type == 'Scheduled')].status", &p),
            vec![json!("True")]
        );
        assert_eq!(
            find(".status.conditions[?(@.count > 2)].type", &p),
            vec![json!("Ready")]
        );
        assert_eq!(
            find(".status.conditions[?(@.count)].type", &p),
            vec![json!("Ready")]
        );
        assert_eq!(
            find(r#".status.conditions[?(@.type!="Ready")].type"#, &p),
            vec![json!("Scheduled")]
        );
    }

    #[test]
    fn malformed_paths_are_errors_that_name_the_position() {
        let err = JsonPath::parse(".a[").expect_err("unterminated bracket");
        assert!(err.to_string().contains("JSONPath `.a[`"), "{err}");
        assert!(JsonPath::parse(".a[?(@.b==)]").is_err());
        assert!(JsonPath::parse(".a['b").is_err());
    }
}
