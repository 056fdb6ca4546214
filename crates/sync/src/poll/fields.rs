//! The filter's event shaping: `event_fields` (keep only the listed dotted paths) and
//! `event_format: federation` (the signed PDU instead of the client format).

use serde_json::{Map, Value};

/// Splits `a.b\.c` into `["a", "b.c"]`.
fn path(field: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                parts.last_mut().expect("non-empty").push('.');
                chars.next();
            }
            '.' => parts.push(String::new()),
            c => parts.last_mut().expect("non-empty").push(c),
        }
    }
    parts
}

/// Keeps only the listed fields of an event.
pub fn keep_fields(event: &Value, fields: &[String]) -> Value {
    let mut out = Map::new();
    for f in fields {
        let p = path(f);
        copy_path(event, &mut out, &p);
    }
    Value::Object(out)
}

fn copy_path(from: &Value, to: &mut Map<String, Value>, path: &[String]) {
    let Some((head, rest)) = path.split_first() else { return };
    let Some(value) = from.get(head) else { return };
    if rest.is_empty() {
        to.insert(head.clone(), value.clone());
        return;
    }
    if let Value::Object(_) = value {
        let slot = to.entry(head.clone()).or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(inner) = slot {
            copy_path(value, inner, rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keeps_listed_paths() {
        let ev = json!({"type": "m.room.message", "sender": "@a:x", "content": {"body": "hi", "msgtype": "m.text", "a.b": 1}});
        let fields = vec!["type".to_string(), "content.body".to_string(), "content.a\\.b".to_string()];
        assert_eq!(keep_fields(&ev, &fields), json!({"type": "m.room.message", "content": {"body": "hi", "a.b": 1}}));
        assert_eq!(keep_fields(&ev, &["nope.x".to_string()]), json!({}));
    }
}
