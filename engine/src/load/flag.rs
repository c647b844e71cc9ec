//! One flag definition, from its JSON object to a [`Flag`]: field types, `state`, `variants`,
//! `defaultVariant`, compiled targeting, metadata merged over its set's, and the names of fields flagd does
//! not know (`docs/compatibility.md#flag-documents`).

use std::fmt;
use std::sync::{Arc, LazyLock};

use serde_json::Value;

use super::error::LoadError;
use super::text::{Locator, type_name};
use crate::model::{Flag, FlagState, Metadata, RawJson, Variants};
use crate::schema::{self, Warning, escape_pointer};
use crate::targeting::Rule;

static ENABLED: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("ENABLED"));
static DISABLED: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("DISABLED"));

pub(super) fn build_flag(
    key: String,
    value: Value,
    index: Option<usize>,
    set_metadata: &Arc<Metadata>,
    set_flag_set_id: &Option<Arc<str>>,
    locator: &Locator<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Flag, LoadError> {
    let malformed = |field: &str, message: String| LoadError::Malformed {
        path: {
            let flag = match index {
                Some(i) => format!("/flags/{i}"),
                None => format!("/flags/{}", escape_pointer(&key)),
            };
            if field.is_empty() {
                flag
            } else {
                format!("{flag}/{field}")
            }
        },
        message,
        at: locator.find_flag(&key),
    };
    // Go decodes `null` into a zero-valued flag (enabled, no variants) without an error.
    let parts = match value {
        Value::Object(mut fields) => FlagParts {
            state: fields.remove("state"),
            variants: fields.remove("variants").map(VariantsPart::from),
            default_variant: fields.remove("defaultVariant"),
            targeting: fields.remove("targeting"),
            metadata: fields.remove("metadata"),
            unknown: fields.keys().cloned().collect(),
        },
        Value::Null => FlagParts::default(),
        other => {
            return Err(malformed(
                "",
                format!("a flag must be an object, not {}", type_name(&other)),
            ));
        }
    };
    build_flag_from_parts(
        key,
        parts,
        index,
        set_metadata,
        set_flag_set_id,
        locator,
        warnings,
    )
}

/// The fields of a flag definition the loader reads; any other field is ignored with a warning (an error
/// with `LoadOptions::strict`), so a misspelt `targetting` does not pass silently.
#[derive(Debug, Default)]
pub(super) struct FlagParts {
    pub(super) state: Option<Value>,
    pub(super) variants: Option<VariantsPart>,
    pub(super) default_variant: Option<Value>,
    pub(super) targeting: Option<Value>,
    pub(super) metadata: Option<Value>,
    /// Names of the fields not read.
    pub(super) unknown: Vec<String>,
}

/// A flag's `variants` as read: an object as its entries, sorted by name with the last of a repeated name
/// kept (what decoding it into a [`Map`] gives, without the map: a [`Map`] spends a 600-byte tree node on
/// even one entry, and a document of 10,000 flags built 10,000 of them only to take them apart again), or
/// any other value as it is (reported by validation and loading).
#[derive(Debug)]
pub(super) enum VariantsPart {
    Entries(Vec<(String, Value)>),
    Other(Value),
}

impl From<Value> for VariantsPart {
    fn from(value: Value) -> Self {
        match value {
            // A map iterates in name order: sorted, no repeats.
            Value::Object(map) => VariantsPart::Entries(map.into_iter().collect()),
            other => VariantsPart::Other(other),
        }
    }
}

impl<'de> serde::Deserialize<'de> for VariantsPart {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PartVisitor;
        impl<'de> serde::de::Visitor<'de> for PartVisitor {
            type Value = VariantsPart;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<VariantsPart, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(name) = map.next_key::<String>()? {
                    entries.push((name, map.next_value::<Value>()?));
                }
                super::sort_keeping_last(&mut entries);
                Ok(VariantsPart::Entries(entries))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<VariantsPart, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Value>()? {
                    items.push(item);
                }
                Ok(VariantsPart::Other(Value::Array(items)))
            }
            fn visit_bool<E>(self, v: bool) -> Result<VariantsPart, E> {
                Ok(VariantsPart::Other(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<VariantsPart, E> {
                Ok(VariantsPart::Other(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<VariantsPart, E> {
                Ok(VariantsPart::Other(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<VariantsPart, E> {
                Ok(VariantsPart::Other(Value::from(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<VariantsPart, E> {
                Ok(VariantsPart::Other(Value::String(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<VariantsPart, E> {
                Ok(VariantsPart::Other(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<VariantsPart, E> {
                Ok(VariantsPart::Other(Value::Null))
            }
            fn visit_none<E>(self) -> Result<VariantsPart, E> {
                Ok(VariantsPart::Other(Value::Null))
            }
            fn visit_some<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<VariantsPart, D::Error> {
                serde::Deserialize::deserialize(d)
            }
        }
        d.deserialize_any(PartVisitor)
    }
}

/// The names of a flag definition's fields, as [`FlagParts`] reads them.
pub(super) const FLAG_FIELDS: &str = "state, variants, defaultVariant, targeting, metadata";

/// A field name of a flag definition, told apart without allocating for the known ones.
pub(super) enum FlagField {
    State,
    Variants,
    DefaultVariant,
    Targeting,
    Metadata,
    Other(String),
}

impl<'de> serde::Deserialize<'de> for FlagField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl serde::de::Visitor<'_> for FieldVisitor {
            type Value = FlagField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<FlagField, E> {
                Ok(match name {
                    "state" => FlagField::State,
                    "variants" => FlagField::Variants,
                    "defaultVariant" => FlagField::DefaultVariant,
                    "targeting" => FlagField::Targeting,
                    "metadata" => FlagField::Metadata,
                    other => FlagField::Other(other.to_owned()),
                })
            }
        }
        d.deserialize_identifier(FieldVisitor)
    }
}

impl FlagParts {
    pub(super) fn schema_fields(&self) -> schema::FlagFields<'_> {
        schema::FlagFields {
            state: self.state.as_ref(),
            variants: self.variants.as_ref().map(|variants| match variants {
                VariantsPart::Entries(entries) => schema::VariantsField::Entries(entries),
                VariantsPart::Other(value) => schema::VariantsField::Value(value),
            }),
            default_variant: self.default_variant.as_ref(),
            targeting: self.targeting.as_ref(),
            metadata: self.metadata.as_ref(),
        }
    }
}

/// Warnings for the fields of a flag definition that are not read.
pub(super) fn unknown_fields(key: &str, index: Option<usize>, parts: &FlagParts) -> Vec<Warning> {
    parts
        .unknown
        .iter()
        .map(|name| Warning {
            flag: Some(key.to_owned()),
            path: match index {
                Some(i) => format!("/flags/{i}/{}", escape_pointer(name)),
                None => format!("/flags/{}/{}", escape_pointer(key), escape_pointer(name)),
            },
            message: match did_you_mean(name) {
                Some(known) => {
                    format!("unknown field `{name}` is ignored (did you mean `{known}`?)")
                }
                None => format!("unknown field `{name}` is ignored (a flag has {FLAG_FIELDS})"),
            },
        })
        .collect()
}

/// The flag field `name` is probably a misspelling of: within two edits, case ignored.
fn did_you_mean(name: &str) -> Option<&'static str> {
    const KNOWN: [&str; 5] = [
        "state",
        "variants",
        "defaultVariant",
        "targeting",
        "metadata",
    ];
    let name = name.to_ascii_lowercase();
    KNOWN
        .into_iter()
        .map(|known| (edit_distance(&name, &known.to_ascii_lowercase()), known))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

/// Levenshtein distance (names are short; quadratic is fine).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}

pub(super) fn build_flag_from_parts(
    key: String,
    parts: FlagParts,
    index: Option<usize>,
    set_metadata: &Arc<Metadata>,
    set_flag_set_id: &Option<Arc<str>>,
    locator: &Locator<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Flag, LoadError> {
    if !parts.unknown.is_empty() {
        warnings.extend(unknown_fields(&key, index, &parts));
    }
    let malformed = |field: &str, message: String| LoadError::Malformed {
        path: {
            let flag = match index {
                Some(i) => format!("/flags/{i}"),
                None => format!("/flags/{}", escape_pointer(&key)),
            };
            format!("{flag}/{field}")
        },
        message,
        at: locator.find_flag(&key),
    };
    let FlagParts {
        state,
        variants,
        default_variant,
        targeting,
        metadata,
        unknown: _,
    } = parts;

    let (state, state_raw) = match state {
        None | Some(Value::Null) => (FlagState::Enabled, Arc::from("")),
        Some(Value::String(s)) if s == "ENABLED" => (FlagState::Enabled, ENABLED.clone()),
        Some(Value::String(s)) if s == "DISABLED" => (FlagState::Disabled, DISABLED.clone()),
        Some(Value::String(s)) => (FlagState::Enabled, Arc::from(s)),
        Some(other) => {
            return Err(malformed(
                "state",
                format!("must be a string, not {}", type_name(&other)),
            ));
        }
    };
    let variants = match variants {
        None | Some(VariantsPart::Other(Value::Null)) => Variants::default(),
        Some(VariantsPart::Entries(entries)) => Variants::from_sorted(entries),
        Some(VariantsPart::Other(Value::Object(variants))) => Variants::from(variants),
        Some(VariantsPart::Other(other)) => {
            return Err(malformed(
                "variants",
                format!("must be an object, not {}", type_name(&other)),
            ));
        }
    };
    let default_variant = match default_variant {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => {
            if !variants.contains_key(&s) {
                return Err(LoadError::BadDefaultVariant {
                    at: locator.find_flag(&key),
                    flag: key,
                    variant: s,
                });
            }
            Some(Arc::from(s))
        }
        Some(other) => {
            return Err(malformed(
                "defaultVariant",
                format!("must be a string or null, not {}", type_name(&other)),
            ));
        }
    };
    let mut metadata: Metadata = match metadata {
        None | Some(Value::Null) => Metadata::new(),
        Some(Value::Object(metadata)) => metadata,
        Some(other) => {
            return Err(malformed(
                "metadata",
                format!("must be an object, not {}", type_name(&other)),
            ));
        }
    };
    let metadata = if metadata.is_empty() {
        set_metadata.clone()
    } else {
        for (k, v) in set_metadata.iter() {
            if !metadata.contains_key(k) {
                metadata.insert(k.clone(), v.clone());
            }
        }
        Arc::new(metadata)
    };
    let flag_set_id = match metadata.get("flagSetId") {
        Some(Value::String(id)) => match set_flag_set_id {
            Some(set_id) if **set_id == **id => Some(set_id.clone()),
            _ => Some(Arc::from(id.as_str())),
        },
        _ => None,
    };
    // The document's targeting is kept as written, `{}` included (flagd's sync payloads carry it); only a
    // non-empty rule is compiled.
    let raw_targeting = targeting.as_ref().map(RawJson::from_value);
    let targeting = match &targeting {
        None => None,
        Some(Value::Object(rule)) if rule.is_empty() => None,
        Some(rule) => Some(Rule::compile(rule).map_err(|source| LoadError::Rule {
            flag: key.clone(),
            at: locator.find_flag(&key),
            source,
        })?),
    };

    Ok(Flag {
        key: Arc::from(key),
        state,
        state_raw,
        variants,
        default_variant,
        targeting,
        raw_targeting,
        metadata,
        flag_set_id,
        evaluators: None,
    })
}
