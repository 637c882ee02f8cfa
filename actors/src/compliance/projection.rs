//! Parsing stored properties JSON only as far as the insights read it.
//!
//! Owns: [`parse`], which reads JSON text into a `serde_json::Value` holding only the
//! object keys a [`Projection`] names (whole values where a node is `whole`), skipping
//! everything else without allocating; arrays are transparent, as the projection says.
//!
//! Must never: accept malformed JSON (the skipped parts are still fully checked), or change
//! what an insight sees: for every path a rule reads, the projected value equals the full
//! one (the compliance tests compare both on every built-in insight).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::rules::Projection;

/// The parts of `json` that `projection` names. An empty projection yields `Null` without
/// reading the text; a `whole` one the full value.
pub fn parse(json: &str, projection: &Projection) -> Result<Value, serde_json::Error> {
    if projection.is_empty() {
        return Ok(Value::Null);
    }
    let mut de = serde_json::Deserializer::from_str(json);
    let value = Node(projection).deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Deserializes the value at one node of a projection.
#[derive(Clone, Copy)]
struct Node<'p>(&'p Projection);

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.whole {
            serde::Deserialize::deserialize(d)
        } else {
            d.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // arrays are transparent: every element is projected with this node
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element_seed(self)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(Key(self.0))? {
            match key {
                Some((name, child)) => {
                    let v = map.next_value_seed(Node(child))?;
                    out.insert(name.to_owned(), v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// Reads an object key without allocating and looks it up among a node's keys: the
/// projection's own copy of the key and its node, or none for a key no rule reads.
struct Key<'p>(&'p Projection);

impl<'de, 'p> DeserializeSeed<'de> for Key<'p> {
    type Value = Option<(&'p str, &'p Projection)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 'p> Visitor<'de> for Key<'p> {
    type Value = Option<(&'p str, &'p Projection)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let keys = &self.0.keys;
        Ok(keys
            .binary_search_by(|(k, _)| (**k).cmp(v))
            .ok()
            .map(|i| (&*keys[i].0, &keys[i].1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(whole: bool, keys: Vec<(&str, Projection)>) -> Projection {
        Projection {
            whole,
            keys: keys.into_iter().map(|(k, p)| (k.into(), p)).collect(),
        }
    }

    fn leaf() -> Projection {
        node(true, vec![])
    }

    #[test]
    fn keeps_only_named_keys_through_arrays() {
        let p = node(
            false,
            vec![("a", node(false, vec![("b", leaf())])), ("z", leaf())],
        );
        let text = r#"{"a":[{"b":1,"c":2},{"c":3},{"b":{"deep":[1,2]}}],"x":{"y":"skip"},"z":[1,{"k":null}]}"#;
        let got = parse(text, &p).expect("parses");
        assert_eq!(
            got,
            json!({"a":[{"b":1},{},{"b":{"deep":[1,2]}}],"z":[1,{"k":null}]})
        );
    }

    #[test]
    fn scalars_at_interior_nodes_are_kept_and_empty_projection_reads_nothing() {
        let p = node(false, vec![("a", node(false, vec![("b", leaf())]))]);
        assert_eq!(
            parse(r#"{"a":"text","b":2}"#, &p).expect("parses"),
            json!({"a":"text"})
        );
        // not even checked: nothing is read
        assert_eq!(
            parse("not json", &Projection::default()).expect("not read"),
            Value::Null
        );
    }

    #[test]
    fn malformed_text_is_refused_even_in_skipped_parts() {
        let p = node(false, vec![("a", leaf())]);
        assert!(parse(r#"{"a":1,"skipped":[1,}"#, &p).is_err());
        assert!(parse(r#"{"a":1} trailing"#, &p).is_err());
        assert!(parse(r#"{"a":1"#, &p).is_err());
    }

    #[test]
    fn escaped_keys_are_matched() {
        let p = node(false, vec![("a\"b", leaf())]);
        assert_eq!(
            parse(r#"{"a\"b":1,"c":2}"#, &p).expect("parses"),
            json!({"a\"b":1})
        );
    }
}
