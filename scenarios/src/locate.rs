//! Where a key such as `systems[2].tls.versions` is written in a scenario file, so an invalid
//! value's error names its line and column as a syntax error does.

use toml_edit::{Item, TableLike, Value};

/// Line and column (from 1) of `key` in `text`. A key that is not written there (a default, a
/// generated system) gives the nearest enclosing key that is, or `None`.
pub fn locate(text: &str, key: &str) -> Option<(usize, usize)> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut here: Option<&dyn TableLike> = Some(doc.as_table());
    let mut span = None;
    for part in key.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => (n, rest.strip_suffix(']').and_then(|i| i.parse::<usize>().ok())),
            None => (part, None),
        };
        let Some((k, item)) = here.and_then(|t| t.get_key_value(name)) else { break };
        span = k.span().or(span);
        let (next, inner) = match (item, index) {
            (Item::ArrayOfTables(a), Some(n)) => match a.get(n) {
                Some(t) => (Some(t as &dyn TableLike), t.span()),
                None => (None, None),
            },
            (Item::Value(Value::Array(a)), Some(n)) => match a.get(n) {
                Some(v) => (v.as_inline_table().map(|t| t as &dyn TableLike), v.span()),
                None => (None, None),
            },
            (_, Some(_)) => (None, None),
            (item, None) => (item.as_table_like(), None),
        };
        span = inner.or(span);
        here = next;
    }
    let at = span?.start.min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
    Some((line, column))
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn finds_tables_arrays_of_tables_and_array_elements() {
        let text = "[scenario]\nname = \"x\"\n\n[[systems]]\nname = \"a\"\n\n[[systems]]\nname = \"b\"\n\
                    tls = { versions = [\"1.4\"] }\n\n[tap]\npairs = [[\"a\", \"b\"], [\"a\", \"c\"]]\n";
        assert_eq!(locate(text, "scenario.name"), Some((2, 1)));
        assert_eq!(locate(text, "systems[1].name"), Some((8, 1)));
        assert_eq!(locate(text, "systems[1].tls.versions"), Some((9, 9)));
        assert_eq!(locate(text, "tap.pairs[1]"), Some((12, 22)));
        // Not written: the nearest enclosing key.
        assert_eq!(locate(text, "systems[1].starttls"), Some((7, 1)));
        assert_eq!(locate(text, "traffic.rate"), None);
    }
}
