//! Line numbers for key paths, so validation problems can say where in the file they are.
//!
//! The text is parsed a second time into a bare tree of `toml::Spanned` nodes (keys and spans,
//! no values) and flattened into a map from key path (`backends[1].port`) to line. This runs only
//! when validation found problems, so its cost does not matter.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

/// Line of every key path present in one document.
pub(super) struct Lines(HashMap<String, usize>);

impl Lines {
    /// Indexes `text`, which already deserialized into a `Config`. toml gives no span to a table
    /// created implicitly by a dotted key (`monitor.interval = "1s"` at top level); such a
    /// document gets an empty index and its problems go without lines.
    pub(super) fn index(text: &str) -> Lines {
        let mut lines = HashMap::new();
        if let Ok(Node::Table(entries)) = toml::from_str::<Node>(text) {
            for (key, child) in entries {
                record(text, key, child, &mut lines);
            }
        }
        Lines(lines)
    }

    /// Line of `path`, or of its nearest parent present in the document (a problem about a key
    /// left at its default points at its section).
    pub(super) fn line_of(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.0.get(path) {
                return Some(*line);
            }
            path = path.rfind(['.', '[']).and_then(|end| path.get(..end))?;
        }
    }
}

fn record(text: &str, path: String, node: Spanned<Node>, lines: &mut HashMap<String, usize>) {
    let line = position(text, node.span().start).0;
    match node.into_inner() {
        Node::Table(entries) => {
            for (key, child) in entries {
                record(text, format!("{path}.{key}"), child, lines);
            }
        }
        Node::Array(items) => {
            for (index, item) in items.into_iter().enumerate() {
                record(text, format!("{path}[{index}]"), item, lines);
            }
        }
        Node::Scalar => {}
    }
    lines.insert(path, line);
}

/// 1-based (line, column) of byte `offset` in `text`; the column counts characters.
pub(super) fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before.get(line_start..).map_or(0, |rest| rest.chars().count()) + 1;
    (line, column)
}

/// A TOML value reduced to its shape; children carry their spans.
enum Node {
    Table(Vec<(String, Spanned<Node>)>),
    Array(Vec<Spanned<Node>>),
    Scalar,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            entries.push((key, map.next_value::<Spanned<Node>>()?));
        }
        Ok(Node::Table(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }
}
