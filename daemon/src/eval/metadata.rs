//! Response metadata, without building it: the selector's key reflected back (`source` or `flagSetId`) with
//! the flag's metadata (already merged with its set's) laid over it, `null` values left out
//! (`docs/protocols.md#answers-per-protocol`).
//!
//! [`ResponseMetadata`] is a view over the selector and the flag; each protocol writes it straight into its
//! own form (gRPC a `Struct`, OFREP JSON) in key order, so no intermediate map is built per request.

use flagpole_engine::{Metadata, Selector, Value};

/// One metadata value: the reflected selector value (a string), or a flag metadata value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetadataValue<'a> {
    /// A string (the selector's value).
    Text(&'a str),
    /// A JSON value from the flag's metadata (never `null`).
    Json(&'a Value),
}

/// The metadata of one answer: the selector reflection, and the flag's metadata when there is a flag.
#[derive(Debug, Clone, Copy)]
pub struct ResponseMetadata<'a> {
    selector: &'a Selector,
    flag: Option<&'a Metadata>,
}

impl<'a> ResponseMetadata<'a> {
    /// The metadata of an answer about a flag.
    pub fn of_flag(selector: &'a Selector, flag: &'a Metadata) -> Self {
        ResponseMetadata {
            selector,
            flag: Some(flag),
        }
    }

    /// The selector reflection alone (bulk answers, a flag that was not found).
    pub fn reflection(selector: &'a Selector) -> Self {
        ResponseMetadata {
            selector,
            flag: None,
        }
    }

    /// True when there is no entry at all.
    pub fn is_empty(&self) -> bool {
        let mut empty = true;
        self.for_each(|_, _| empty = false);
        empty
    }

    /// Calls `f` for each entry, in key order, each key once.
    pub fn for_each(&self, mut f: impl FnMut(&'a str, MetadataValue<'a>)) {
        let mut reflected = match self.selector {
            Selector::All => None,
            Selector::Source(source) => Some(("source", source.as_str())),
            Selector::FlagSetId(id) => Some(("flagSetId", id.as_str())),
        };
        let Some(flag) = self.flag else {
            if let Some((key, value)) = reflected {
                f(key, MetadataValue::Text(value));
            }
            return;
        };
        for (key, value) in flag.iter().filter(|(_, v)| !v.is_null()) {
            if let Some((reflected_key, reflected_value)) = reflected {
                // The flag's own value for the key wins; a key ordered before this one comes first.
                if reflected_key == key {
                    reflected = None;
                } else if reflected_key < key.as_str() {
                    f(reflected_key, MetadataValue::Text(reflected_value));
                    reflected = None;
                }
            }
            f(key, MetadataValue::Json(value));
        }
        if let Some((key, value)) = reflected {
            f(key, MetadataValue::Text(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entries(metadata: ResponseMetadata<'_>) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        metadata.for_each(|key, value| {
            let value = match value {
                MetadataValue::Text(text) => Value::String(text.to_owned()),
                MetadataValue::Json(value) => value.clone(),
            };
            out.push((key.to_owned(), value));
        });
        out
    }

    fn metadata(value: Value) -> Metadata {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn the_selector_is_reflected_in_key_order_and_the_flag_wins() {
        let set = Selector::FlagSetId("s".into());
        let flag = metadata(json!({"a": 1, "z": true, "gone": null}));
        assert_eq!(
            entries(ResponseMetadata::of_flag(&set, &flag)),
            [
                ("a".to_owned(), json!(1)),
                ("flagSetId".to_owned(), json!("s")),
                ("z".to_owned(), json!(true)),
            ]
        );
        let own = metadata(json!({"flagSetId": "own", "b": "x"}));
        assert_eq!(
            entries(ResponseMetadata::of_flag(&set, &own)),
            [
                ("b".to_owned(), json!("x")),
                ("flagSetId".to_owned(), json!("own")),
            ]
        );
        // A null of the flag's own does not hide the reflection.
        let null = metadata(json!({"flagSetId": null}));
        assert_eq!(
            entries(ResponseMetadata::of_flag(&set, &null)),
            [("flagSetId".to_owned(), json!("s"))]
        );
        let source = Selector::Source("f.json".into());
        assert_eq!(
            entries(ResponseMetadata::of_flag(
                &source,
                &metadata(json!({"a": 1}))
            )),
            [
                ("a".to_owned(), json!(1)),
                ("source".to_owned(), json!("f.json")),
            ]
        );
        assert_eq!(
            entries(ResponseMetadata::reflection(&source)),
            [("source".to_owned(), json!("f.json"))]
        );
        assert!(entries(ResponseMetadata::reflection(&Selector::All)).is_empty());
    }
}
