//! Where a TOML file failed to parse, said without quoting the file. The `toml` crate's
//! `Display` prints the offending line, and serde's messages quote values and unknown keys
//! (`invalid type: string "…"`, ``unknown field `…` ``): for a file the reader did not write
//! (a hardware profile named over the API, a credentials file), that would hand out its
//! content. `Withheld` keeps the position and the parser's own words only.

use std::fmt;

/// A TOML parse error of a file that is not the reader's own: line, column and a message
/// from which everything the file supplied has been removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    /// Counted from 1; `None` when the parser gave no position.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

/// The longest message kept: an "expected one of …" list of a large table is long enough.
const MAX_MESSAGE: usize = 300;

impl Withheld {
    /// `text` is what was parsed: the position is computed from it, nothing of it is kept.
    pub fn new(text: &str, error: &toml::de::Error) -> Withheld {
        let (line, column) = match error.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        Withheld { line, column, message: withhold_quoted(error.message()) }
    }
}

impl fmt::Display for Withheld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "line {line}, column {column}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// Line and column (both from 1, the column in characters) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

/// A parser message without what the file supplied. serde and the TOML parser put the
/// file's value, key or variant first and their own expectation last (`invalid type: string
/// "x", expected u32`; ``unknown variant `x`, expected one of `sim`, `v4l2` ``), so from the
/// first quote up to the last "expected" everything is dropped; the "expected …" part names
/// the schema's words, never the file's. ``missing field `x` `` names the schema's key.
fn withhold_quoted(message: &str) -> String {
    let message = message.trim();
    let kept = if message.starts_with("missing field `") && message.matches('`').count() == 2 {
        message.to_string()
    } else {
        let (head, tail) = match message.rfind("expected") {
            Some(i) => message.split_at(i),
            None => (message, ""),
        };
        match head.find(['`', '"', '\'']) {
            None => message.to_string(),
            Some(cut) => {
                let head = head[..cut].trim_end().trim_end_matches([':', ',']);
                let sep = if tail.is_empty() { "" } else { ", " };
                format!("{head} (value not shown){sep}{tail}")
            }
        }
    };
    let flat: String = kept.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    match flat.char_indices().nth(MAX_MESSAGE) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Schema {
        name: String,
        fps: Option<u32>,
        kind: Option<Kind>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Sim,
    }

    fn withheld(text: &str) -> String {
        let e = toml::from_str::<Schema>(text).unwrap_err();
        Withheld::new(text, &e).to_string()
    }

    #[test]
    fn positions_are_lines_and_columns_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é\nx", 1), (1, 1), "inside a character: the character itself");
        assert_eq!(line_column("é\nx", 2), (1, 2));
        assert_eq!(line_column("ab", 99), (1, 3));
    }

    /// Whatever the file holds, in a value, a key, a variant or a line that is not TOML,
    /// never appears in the message; the position and the schema's words do.
    #[test]
    fn nothing_of_the_file_is_quoted() {
        const SECRET: &str = "SECRET-7f3a";
        let cases = [
            (format!("name = \"x\"\nfps = \"{SECRET}\"\n"), "line 2, column 7", "expected u32"),
            (format!("name = \"x\"\n{SECRET} = 1\n"), "line 2, column 1", "expected one of `name`, `fps`, `kind`"),
            (format!("name = \"x\"\nkind = \"{SECRET}\"\n"), "line 2", "expected `sim`"),
            (format!("root:{SECRET}:19000:0:99999:7:::\n"), "line 1", ""),
            (format!("name = \"x\"\nfps = \"expected {SECRET}\"\n"), "line 2", "expected u32"),
            (format!("name = '''{SECRET}\n"), "line 2, column 1", ""),
            (format!("[{SECRET}\nname = 1\n"), "line 1", ""),
            (format!("name = \"x\"\nname = \"{SECRET}\"\n"), "line 2", ""),
        ];
        for (text, at, words) in cases {
            let message = withheld(&text);
            assert!(!message.contains(SECRET), "{message}");
            assert!(!message.contains("SECRET"), "{message}");
            assert!(message.contains(at) && message.contains(words), "{at:?} {words:?} in {message:?}");
        }
        assert!(withheld("fps = 3\n").contains("missing field `name`"));
    }

    #[test]
    fn long_messages_are_cut() {
        assert!(withhold_quoted(&"x".repeat(1000)).chars().count() <= MAX_MESSAGE + 1);
        assert_eq!(withhold_quoted("a\nb"), "a b");
    }
}
