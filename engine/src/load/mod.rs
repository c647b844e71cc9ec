//! Loading flag documents (JSON or YAML) into [`Flag`]s.
//!
//! What it owns: turning one document (a file, an HTTP body, a sync payload) into immutable flags, with
//! flagd 0.16's acceptance rules (`core/pkg/evaluator/json.go`, `docs/compatibility.md#flag-documents`):
//!
//! 1. schema validation ([`crate::schema`]): warnings by default, a rejection with [`LoadOptions::strict`];
//! 2. `$evaluators` inlining: every object that is exactly `{"$ref": "<name>"}` of a defined evaluator is
//!    replaced by that evaluator, anywhere in the document (flagd does a textual replacement after
//!    normalising the JSON, so the whitespace in the source does not matter). A reference to an undefined
//!    evaluator stays and fails at evaluation (PARSE_ERROR). An evaluator whose normalised JSON is shorter
//!    than 3 characters rejects the document. Unlike flagd, whose map-order substitution sometimes resolves
//!    a `$ref` inside an evaluator and sometimes not, nested references are always resolved (cycles stay
//!    unresolved);
//! 3. the `flags` map or array; a missing or malformed `flags`, or a flag field of the wrong JSON type,
//!    rejects the document; `null`, `{}` and `[]` are "no flags";
//! 4. a non-empty `defaultVariant` that is not a variant rejects the document.
//!
//! Flag-set `metadata` is merged under each flag's metadata (flag keys win) and the flag's flagSetId is the
//! merged `metadata.flagSetId` when it is a string. Targeting is compiled once here.
//!
//! What it does not do: read files or watch them, merge sources (that is [`crate::Snapshot`]), or
//! evaluate anything.

mod error;
mod flag;
mod inline;
mod limits;
mod text;

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

pub use error::{LoadError, Location};
use flag::{FlagField, FlagParts, build_flag, build_flag_from_parts};
use inline::Inliner;
pub use limits::{MAX_DOCUMENT_BYTES, MAX_FLAGS, MAX_INLINED_NODES, MAX_NESTING_DEPTH};
pub use text::Format;
use text::{Locator, parse_json, parse_yaml, type_name};

use crate::model::{Flag, Metadata};
pub use crate::schema::Warning;
use crate::schema::{self, SchemaKind};

/// Shortest normalised JSON an evaluator may have; flagd rejects shorter ones ("evaluator object is empty").
const MIN_EVALUATOR_JSON_LEN: usize = 3;

/// How strictly to load.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Reject documents with schema violations instead of warning (flagd warns).
    pub strict: bool,
}

/// A loaded document.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The flags: in document order for the array form, sorted by key for the map form.
    pub flags: Vec<Arc<Flag>>,
    /// The flag-set metadata (already merged into each flag's metadata).
    pub metadata: Metadata,
    /// Schema violations and unknown fields (only when not strict: strict rejects them).
    pub warnings: Vec<Warning>,
    /// Findings that are not schema violations and never reject the document: flags flagd would drop
    /// (an empty `flagSetId`), `$ref`s to evaluators the document does not define.
    pub notes: Vec<Warning>,
}

/// Parses and validates a flag document.
pub fn parse_document(
    text: &str,
    format: Format,
    options: &LoadOptions,
) -> Result<Loaded, LoadError> {
    load(text, format, options, &mut FlagErrors::Stop)
}

/// Like [`parse_document`], but a document whose flags have errors reports every such flag, not only the
/// first (for `flagpole validate`). Errors that concern the whole document stop at once, as there.
pub fn check_document(
    text: &str,
    format: Format,
    options: &LoadOptions,
) -> Result<Loaded, Vec<LoadError>> {
    let mut errors = FlagErrors::Collect(Vec::new());
    match load(text, format, options, &mut errors) {
        Ok(loaded) => Ok(loaded),
        Err(first) => match errors {
            FlagErrors::Collect(all) if !all.is_empty() => Err(all),
            _ => Err(vec![first]),
        },
    }
}

/// What to do with a flag that fails to build: stop the load, or note the error and go on.
enum FlagErrors {
    Stop,
    Collect(Vec<LoadError>),
}

impl FlagErrors {
    /// Keeps `flag` or handles its error; `Err` stops the load.
    fn take(
        &mut self,
        flag: Result<Flag, LoadError>,
        into: &mut Vec<Arc<Flag>>,
    ) -> Result<(), LoadError> {
        match (flag, self) {
            (Ok(flag), _) => into.push(Arc::new(flag)),
            (Err(e), FlagErrors::Stop) => return Err(e),
            (Err(e), FlagErrors::Collect(all)) => all.push(e),
        }
        Ok(())
    }

    /// After every flag: the first collected error, if any.
    fn finish(&self) -> Result<(), LoadError> {
        match self {
            FlagErrors::Collect(all) if !all.is_empty() => Err(all[0].clone()),
            _ => Ok(()),
        }
    }
}

fn load(
    text: &str,
    format: Format,
    options: &LoadOptions,
    flag_errors: &mut FlagErrors,
) -> Result<Loaded, LoadError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(LoadError::TooLarge { bytes: text.len() });
    }
    if format == Format::Json
        && let Some(result) = parse_plain_json(text, options, flag_errors)
    {
        return result;
    }
    let doc = match format {
        Format::Json => parse_json(text)?,
        Format::Yaml => parse_yaml(text)?,
    };
    let locator = Locator { text, format };

    if !doc.is_object() {
        return Err(not_an_object(&doc));
    }
    let violations = schema::validate(&doc, SchemaKind::Flagd);
    if options.strict && !violations.is_empty() {
        return Err(LoadError::Schema { violations });
    }
    let Value::Object(mut root) = doc else {
        return Err(not_an_object(&doc));
    };

    let evaluators = match root.remove("$evaluators") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(evaluators)) => evaluators,
        Some(other) => {
            return Err(LoadError::Malformed {
                path: "/$evaluators".into(),
                message: format!("must be an object, not {}", type_name(&other)),
                at: locator.find_key("$evaluators"),
            });
        }
    };
    for (name, evaluator) in &evaluators {
        let mut normalised = String::new();
        crate::go_json::write_go_json(evaluator, &mut normalised);
        if normalised.len() < MIN_EVALUATOR_JSON_LEN {
            return Err(LoadError::EmptyEvaluator { name: name.clone() });
        }
    }

    let mut set_metadata = match root.remove("metadata") {
        None | Some(Value::Null) => Metadata::new(),
        Some(Value::Object(metadata)) => metadata,
        Some(other) => {
            return Err(LoadError::Malformed {
                path: "/metadata".into(),
                message: format!("must be an object, not {}", type_name(&other)),
                at: locator.find_key("metadata"),
            });
        }
    };
    let mut flags_value = root.remove("flags").ok_or(LoadError::MissingFlags)?;
    if !evaluators.is_empty() {
        let mut inliner = Inliner::new(&evaluators);
        inliner.inline(&mut flags_value, 1)?;
        let mut wrapped = Value::Object(std::mem::take(&mut set_metadata));
        inliner.inline(&mut wrapped, 1)?;
        if let Value::Object(m) = wrapped {
            set_metadata = m;
        }
    }

    // (key, definition, index in the array form)
    let entries: Vec<(String, Value, Option<usize>)> = match flags_value {
        Value::Null => Vec::new(),
        Value::Object(map) => {
            if map.len() > MAX_FLAGS {
                return Err(LoadError::TooManyFlags { count: map.len() });
            }
            map.into_iter()
                .map(|(key, value)| (key, value, None))
                .collect()
        }
        Value::Array(items) => {
            if items.len() > MAX_FLAGS {
                return Err(LoadError::TooManyFlags { count: items.len() });
            }
            let mut entries = Vec::with_capacity(items.len());
            for (i, mut item) in items.into_iter().enumerate() {
                let key = match &mut item {
                    Value::Object(fields) => match fields.remove("key") {
                        None | Some(Value::Null) => String::new(),
                        Some(Value::String(key)) => key,
                        Some(other) => {
                            return Err(LoadError::Malformed {
                                message: format!("key must be a string, not {}", type_name(&other)),
                                path: format!("/flags/{i}/key"),
                                at: Location::default(),
                            });
                        }
                    },
                    _ => String::new(),
                };
                entries.push((key, item, Some(i)));
            }
            entries
        }
        other => {
            return Err(LoadError::Malformed {
                path: "/flags".into(),
                message: format!("must be an object or an array, not {}", type_name(&other)),
                at: locator.find_key("flags"),
            });
        }
    };

    let set_flag_set_id = set_metadata
        .get("flagSetId")
        .and_then(Value::as_str)
        .map(Arc::<str>::from);
    let shared_metadata = Arc::new(set_metadata);
    let mut flags = Vec::with_capacity(entries.len());
    let mut unknown = Vec::new();
    for (key, value, index) in entries {
        let flag = build_flag(
            key,
            value,
            index,
            &shared_metadata,
            &set_flag_set_id,
            &locator,
            &mut unknown,
        );
        flag_errors.take(flag, &mut flags)?;
    }
    flag_errors.finish()?;
    if let Some(inlined) = inlined_evaluators(&evaluators) {
        for flag in &mut flags {
            if flag.targeting.is_some()
                && let Some(flag) = Arc::get_mut(flag)
            {
                flag.evaluators = Some(inlined.clone());
            }
        }
    }
    let warnings = with_unknown_fields(violations, unknown, options)?;
    let mut notes = dropped_by_flagd(&flags);
    notes.extend(undefined_refs(&flags, &evaluators));
    notes.extend(expired(&flags, today()));

    Ok(Loaded {
        flags,
        metadata: Arc::unwrap_or_clone(shared_metadata),
        warnings,
        notes,
    })
}

/// Each evaluator with its own references inlined (for explanations), all within one inlining budget
/// (`docs/limits.md`); an evaluator that does not fit is left out. `None` without evaluators.
fn inlined_evaluators(evaluators: &Map<String, Value>) -> Option<Arc<Metadata>> {
    if evaluators.is_empty() {
        return None;
    }
    let mut inlined = Metadata::new();
    let mut inliner = Inliner::new(evaluators);
    for (name, body) in evaluators {
        let mut body = body.clone();
        inliner.stack.push(name);
        let fits = inliner.inline(&mut body, 1).is_ok();
        inliner.stack.pop();
        if fits {
            inlined.insert(name.clone(), body);
        }
    }
    Some(Arc::new(inlined))
}

/// The common JSON document, loaded without building a [`Value`] tree for the `flags` map or the flag
/// objects in it: a root object whose `flags` is a map of flag objects, no `$evaluators` (or an empty
/// one), and no duplicated root or flag field. `None` means "not that shape": the caller then runs the
/// general path, which also produces the errors (with their positions) for broken documents.
fn parse_plain_json(
    text: &str,
    options: &LoadOptions,
    flag_errors: &mut FlagErrors,
) -> Option<Result<Loaded, LoadError>> {
    let PlainDocument {
        mut flags,
        mut root,
    } = serde_json::from_str(text).ok()?;
    match root.get("$evaluators") {
        None | Some(Value::Null) => {}
        Some(Value::Object(evaluators)) if evaluators.is_empty() => {}
        Some(_) => return None,
    }
    if !matches!(
        root.get("metadata"),
        None | Some(Value::Null) | Some(Value::Object(_))
    ) {
        return None;
    }
    if flags.len() > MAX_FLAGS {
        return Some(Err(LoadError::TooManyFlags { count: flags.len() }));
    }
    sort_keeping_last(&mut flags);

    root.insert("flags".to_owned(), Value::Object(Map::new()));
    let root = Value::Object(root);
    let fields: Vec<(&str, schema::FlagFields<'_>)> = flags
        .iter()
        .map(|(key, parts)| (key.as_str(), parts.schema_fields()))
        .collect();
    let violations = schema::validate_split(&root, &fields);
    drop(fields);
    if options.strict && !violations.is_empty() {
        return Some(Err(LoadError::Schema { violations }));
    }
    let Value::Object(mut root) = root else {
        return None;
    };
    let set_metadata = match root.remove("metadata") {
        Some(Value::Object(metadata)) => metadata,
        _ => Metadata::new(),
    };
    let locator = Locator {
        text,
        format: Format::Json,
    };
    let set_flag_set_id = set_metadata
        .get("flagSetId")
        .and_then(Value::as_str)
        .map(Arc::<str>::from);
    let shared_metadata = Arc::new(set_metadata);
    let mut loaded = Vec::with_capacity(flags.len());
    let mut unknown = Vec::new();
    for (key, parts) in flags {
        let flag = build_flag_from_parts(
            key,
            *parts,
            None,
            &shared_metadata,
            &set_flag_set_id,
            &locator,
            &mut unknown,
        );
        if let Err(e) = flag_errors.take(flag, &mut loaded) {
            return Some(Err(e));
        }
    }
    if let Err(e) = flag_errors.finish() {
        return Some(Err(e));
    }
    let warnings = match with_unknown_fields(violations, unknown, options) {
        Ok(warnings) => warnings,
        Err(e) => return Some(Err(e)),
    };
    let mut notes = dropped_by_flagd(&loaded);
    notes.extend(undefined_refs(&loaded, &Map::new()));
    notes.extend(expired(&loaded, today()));
    Some(Ok(Loaded {
        flags: loaded,
        metadata: Arc::unwrap_or_clone(shared_metadata),
        warnings,
        notes,
    }))
}

/// A document of the shape [`parse_plain_json`] handles; deserialising anything else fails.
struct PlainDocument {
    /// The `flags` map, in document order.
    flags: Vec<(String, Box<FlagParts>)>,
    /// Every other root field.
    root: Map<String, Value>,
}

impl<'de> serde::Deserialize<'de> for PlainDocument {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(PlainDocumentVisitor)
    }
}

struct PlainDocumentVisitor;

impl<'de> serde::de::Visitor<'de> for PlainDocumentVisitor {
    type Value = PlainDocument;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a flag document object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<PlainDocument, A::Error> {
        use serde::de::Error;
        let mut flags = None;
        let mut root = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "flags" {
                if flags.is_some() {
                    return Err(A::Error::custom("duplicate `flags`"));
                }
                flags = Some(map.next_value::<PlainFlags>()?.0);
            } else {
                let value: Value = map.next_value()?;
                if root.insert(key, value).is_some() {
                    return Err(A::Error::custom("duplicate root field"));
                }
            }
        }
        let flags = flags.ok_or_else(|| A::Error::custom("no `flags`"))?;
        Ok(PlainDocument { flags, root })
    }
}

/// One flag definition that is a JSON object (a derived `Deserialize` alone would accept an array too).
struct PlainFlag(FlagParts);

impl<'de> serde::Deserialize<'de> for PlainFlag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(PlainFlagVisitor)
    }
}

struct PlainFlagVisitor;

impl<'de> serde::de::Visitor<'de> for PlainFlagVisitor {
    type Value = PlainFlag;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a flag object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<PlainFlag, A::Error> {
        use serde::de::Error;
        let mut parts = FlagParts::default();
        while let Some(field) = map.next_key::<FlagField>()? {
            let slot = match field {
                FlagField::State => &mut parts.state,
                FlagField::Variants => {
                    if parts.variants.is_some() {
                        return Err(A::Error::custom("duplicate field"));
                    }
                    parts.variants = Some(map.next_value()?);
                    continue;
                }
                FlagField::DefaultVariant => &mut parts.default_variant,
                FlagField::Targeting => &mut parts.targeting,
                FlagField::Metadata => &mut parts.metadata,
                FlagField::Other(name) => {
                    // A repeated unknown field sends the document down the general path too.
                    if parts.unknown.contains(&name) {
                        return Err(A::Error::custom("duplicate field"));
                    }
                    parts.unknown.push(name);
                    map.next_value::<serde::de::IgnoredAny>()?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(A::Error::custom("duplicate field"));
            }
            // A present `null` stays `Some(Null)`: it is not the same as an absent field.
            *slot = Some(map.next_value::<Value>()?);
        }
        Ok(PlainFlag(parts))
    }
}

/// Sorts an object's entries by name the way decoding it into a map does: a repeated name keeps its last
/// value, at the name's sorted place. (Already sorted without repeats: left as it is.)
pub(super) fn sort_keeping_last<T>(entries: &mut Vec<(String, T)>) {
    if entries.is_sorted_by(|a, b| a.0 < b.0) {
        return;
    }
    // Stable: repeats stay in document order, and the later one replaces the earlier.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.dedup_by(|later, earlier| {
        let same = later.0 == earlier.0;
        if same {
            std::mem::swap(later, earlier);
        }
        same
    });
}

/// The map form of `flags`, every definition an object (boxed: the list is grown, sorted and deduplicated
/// before the flags are built, and a 200-byte element made that cost 6 MB of copies for 10,000 flags).
struct PlainFlags(Vec<(String, Box<FlagParts>)>);

impl<'de> serde::Deserialize<'de> for PlainFlags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(PlainFlagsVisitor)
    }
}

struct PlainFlagsVisitor;

impl<'de> serde::de::Visitor<'de> for PlainFlagsVisitor {
    type Value = PlainFlags;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of flag objects")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<PlainFlags, A::Error> {
        let mut flags = Vec::with_capacity(map.size_hint().unwrap_or(0).min(1024));
        while let Some(key) = map.next_key::<String>()? {
            flags.push((key, Box::new(map.next_value::<PlainFlag>()?.0)));
        }
        Ok(PlainFlags(flags))
    }
}

fn not_an_object(doc: &Value) -> LoadError {
    LoadError::Malformed {
        path: String::new(),
        message: format!("the document must be an object, not {}", type_name(doc)),
        at: Location { line: 1, column: 1 },
    }
}

/// Warnings for `{"$ref": NAME}` left in a flag's targeting after inlining whose `NAME` is not an evaluator
/// of the document: evaluating such a flag gives PARSE_ERROR (a reference to a defined evaluator left in
/// place is a cycle, reported by evaluation the same way). Only targeting that mentions `$ref` is walked.
fn undefined_refs(flags: &[Arc<Flag>], evaluators: &Map<String, Value>) -> Vec<Warning> {
    fn walk(value: &Value, evaluators: &Map<String, Value>, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let (1, Some(Value::String(name))) = (map.len(), map.get("$ref"))
                    && !evaluators.contains_key(name)
                {
                    found.push(name.clone());
                }
                map.values().for_each(|v| walk(v, evaluators, found));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, evaluators, found)),
            _ => {}
        }
    }
    let mut warnings = Vec::new();
    for flag in flags {
        let Some(raw) = &flag.raw_targeting else {
            continue;
        };
        if !raw.as_str().contains("\"$ref\"") {
            continue;
        }
        let mut found = Vec::new();
        walk(&raw.to_value(), evaluators, &mut found);
        for name in found {
            warnings.push(Warning {
                flag: Some(flag.key.to_string()),
                path: format!("/flags/{}/targeting", schema::escape_pointer(&flag.key)),
                message: format!(
                    "`$ref` to `{name}`, which is not an evaluator of this document: evaluating the flag \
                     gives PARSE_ERROR"
                ),
            });
        }
    }
    warnings
}

/// Notes for flags whose conventional `metadata.expires` (an ISO date, `YYYY-MM-DD`, or a time starting
/// with one) is before `today` (days since 1970-01-01), or is not a date (`docs/admin.md#flag-lifecycle`).
fn expired(flags: &[Arc<Flag>], today: i64) -> Vec<Warning> {
    flags
        .iter()
        .filter_map(|flag| {
            let Some(Value::String(expires)) = flag.metadata.get("expires") else {
                return None;
            };
            let message = match iso_day(expires) {
                None => format!("metadata.expires {expires:?} is not an ISO date (YYYY-MM-DD)"),
                Some(day) if day < today => format!(
                    "expired on {}: remove the flag, or move metadata.expires",
                    &expires[..10]
                ),
                Some(_) => return None,
            };
            Some(Warning {
                flag: Some(flag.key.to_string()),
                path: format!(
                    "/flags/{}/metadata/expires",
                    schema::escape_pointer(&flag.key)
                ),
                message,
            })
        })
        .collect()
}

/// Days since 1970-01-01 of a text starting with `YYYY-MM-DD`.
pub fn iso_day(text: &str) -> Option<i64> {
    let date = text.get(..10)?;
    let mut parts = date.split('-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    let (year, month, day): (i64, i64, i64) =
        (year.parse().ok()?, month.parse().ok()?, day.parse().ok()?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from civil (proleptic Gregorian).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

/// Today, in days since 1970-01-01 (UTC).
fn today() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs() / 86_400).unwrap_or(0))
}

/// Warnings for flags flagd would drop without a word: a `flagSetId` of `""` (its own or its set's) leaves
/// flagd's flag store without a primary index, and flagd serves neither evaluations nor sync payloads of the
/// flag. flagpole serves it (`docs/compatibility.md#flag-documents`) and says so here.
fn dropped_by_flagd(flags: &[Arc<Flag>]) -> Vec<Warning> {
    flags
        .iter()
        .filter(|flag| flag.flag_set_id.as_deref() == Some(""))
        .map(|flag| Warning {
            flag: Some(flag.key.to_string()),
            path: "/metadata/flagSetId".to_owned(),
            message:
                "flagSetId is empty: flagd drops this flag (\"object missing primary index\"); \
                      flagpole serves it"
                    .to_owned(),
        })
        .collect()
}

/// The schema warnings plus the unknown-field warnings; with [`LoadOptions::strict`], unknown fields reject
/// the document like schema violations do.
fn with_unknown_fields(
    mut warnings: Vec<Warning>,
    unknown: Vec<Warning>,
    options: &LoadOptions,
) -> Result<Vec<Warning>, LoadError> {
    if options.strict && !unknown.is_empty() {
        return Err(LoadError::Schema {
            violations: unknown,
        });
    }
    warnings.extend(unknown);
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_days_count_from_the_epoch() {
        assert_eq!(iso_day("1970-01-01"), Some(0));
        assert_eq!(iso_day("1969-12-31"), Some(-1));
        assert_eq!(iso_day("2000-03-01"), Some(11_017));
        assert_eq!(iso_day("2026-12-07T10:00:00Z"), Some(20_794));
        assert_eq!(iso_day("2026-13-01"), None);
        assert_eq!(iso_day("next week"), None);
        assert_eq!(iso_day("2026-1-1"), None);
    }
}
