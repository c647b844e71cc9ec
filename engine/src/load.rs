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

use std::fmt;
use std::sync::{Arc, LazyLock};

use serde_json::{Map, Value};

use crate::model::{Flag, FlagState, Metadata, RawJson, Variants};
pub use crate::schema::Warning;
use crate::schema::{self, SchemaKind, escape_pointer};
use crate::targeting::{Rule, RuleError};

/// Largest document accepted, in bytes (64 MiB: about 200,000 typical flags).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;

/// Deepest nesting of arrays and objects accepted, counted from the document root and measured after
/// `$evaluators` are inlined. The JSON and YAML parsers stop at 128 levels before this check runs.
pub const MAX_NESTING_DEPTH: usize = 128;

/// Most flags one document may define.
pub const MAX_FLAGS: usize = 250_000;

/// Most JSON values (every scalar, array and object) that `$evaluators` inlining may add to one document,
/// counted over all references after nested references are resolved. Evaluators that reference each
/// other twice per level double with every level (22 levels of a 1 KB file would be 4 million copies);
/// such a document is rejected before anything is copied. One million values is about 60 MB of JSON
/// tree, four times the largest targeting rule ([`crate::targeting::MAX_RULE_NODES`]).
pub const MAX_INLINED_NODES: usize = 1_000_000;

/// Shortest normalised JSON an evaluator may have; flagd rejects shorter ones ("evaluator object is empty").
const MIN_EVALUATOR_JSON_LEN: usize = 3;

/// The syntax of a flag document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON.
    Json,
    /// YAML (converted to the same model).
    Yaml,
}

impl Format {
    /// The format flagd infers from a file name: `.json`, `.yaml`, `.yml`; anything else is unsupported.
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

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
    /// Schema violations (only when not strict).
    pub warnings: Vec<Warning>,
}

/// A position in the document text; line 0 means "not known".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str("unknown position")
        } else {
            write!(f, "line {}, column {}", self.line, self.column)
        }
    }
}

/// Why a whole document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The text is not valid JSON/YAML (this includes nesting beyond the parser's recursion limit).
    #[error("syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The document is larger than [`MAX_DOCUMENT_BYTES`].
    #[error("document is {bytes} bytes, more than the limit of {MAX_DOCUMENT_BYTES}")]
    TooLarge {
        /// The document's size.
        bytes: usize,
    },
    /// After `$evaluators` inlining, the document nests deeper than [`MAX_NESTING_DEPTH`].
    #[error("document nests deeper than {MAX_NESTING_DEPTH} levels (after inlining $evaluators)")]
    TooDeep,
    /// Inlining `$evaluators` would add more than [`MAX_INLINED_NODES`] JSON values to the document.
    #[error(
        "inlining $evaluators would add more than {MAX_INLINED_NODES} JSON values to the document \
         (evaluator `{evaluator}` alone expands to {} values)",
        display_count(*expanded)
    )]
    InliningTooLarge {
        /// The evaluator whose reference went over the limit.
        evaluator: String,
        /// How many JSON values that one reference expands to (saturating at `usize::MAX`).
        expanded: usize,
    },
    /// The document defines more than [`MAX_FLAGS`] flags.
    #[error("document defines {count} flags, more than the limit of {MAX_FLAGS}")]
    TooManyFlags {
        /// How many flags it defines.
        count: usize,
    },
    /// The document (or a field that must be an object or array) has the wrong JSON type.
    #[error("malformed document at {at}: {path} {message}")]
    Malformed {
        /// JSON pointer of the offending value.
        path: String,
        /// What is wrong.
        message: String,
        /// Where (the enclosing flag when the value itself cannot be located).
        at: Location,
    },
    /// The document has no `flags` key (an empty file, `{}`).
    #[error("document has no `flags`")]
    MissingFlags,
    /// An evaluator in `$evaluators` is empty (its JSON is shorter than 3 characters).
    #[error("evaluator `{name}` is empty")]
    EmptyEvaluator {
        /// The evaluator's name.
        name: String,
    },
    /// A flag names a `defaultVariant` that is not one of its variants.
    #[error("default variant {variant:?} isn't a valid variant of flag `{flag}` (at {at})")]
    BadDefaultVariant {
        /// The flag key.
        flag: String,
        /// The default variant named.
        variant: String,
        /// Where the flag is defined.
        at: Location,
    },
    /// A targeting rule exceeds a limit of the targeting compiler.
    #[error("targeting of flag `{flag}` (at {at}) is rejected: {source}")]
    Rule {
        /// The flag key.
        flag: String,
        /// Where the flag is defined.
        at: Location,
        /// The compiler's reason.
        #[source]
        source: RuleError,
    },
    /// Strict mode: the document violates the flagd schema.
    #[error("{} schema violation(s), first: {}", violations.len(), violations.first().map(ToString::to_string).unwrap_or_default())]
    Schema {
        /// Every violation found.
        violations: Vec<Warning>,
    },
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
        crate::evaluate::write_go_json(evaluator, &mut normalised);
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
    let warnings = with_unknown_fields(violations, unknown, options)?;

    Ok(Loaded {
        flags,
        metadata: Arc::unwrap_or_clone(shared_metadata),
        warnings,
    })
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
    // A JSON object with a repeated key keeps the last value, at the key's sorted place.
    flags.sort_by(|a, b| a.0.cmp(&b.0));
    flags.dedup_by(|later, earlier| {
        let same = later.0 == earlier.0;
        if same {
            std::mem::swap(later, earlier);
        }
        same
    });

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
            parts,
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
    Some(Ok(Loaded {
        flags: loaded,
        metadata: Arc::unwrap_or_clone(shared_metadata),
        warnings,
    }))
}

/// A document of the shape [`parse_plain_json`] handles; deserialising anything else fails.
struct PlainDocument {
    /// The `flags` map, in document order.
    flags: Vec<(String, FlagParts)>,
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
                FlagField::Variants => &mut parts.variants,
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

/// The map form of `flags`, every definition an object.
struct PlainFlags(Vec<(String, FlagParts)>);

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
            flags.push((key, map.next_value::<PlainFlag>()?.0));
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

static ENABLED: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("ENABLED"));
static DISABLED: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("DISABLED"));

fn build_flag(
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
            variants: fields.remove("variants"),
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
/// with [`LoadOptions::strict`]), so a misspelt `targetting` does not pass silently.
#[derive(Debug, Default)]
struct FlagParts {
    state: Option<Value>,
    variants: Option<Value>,
    default_variant: Option<Value>,
    targeting: Option<Value>,
    metadata: Option<Value>,
    /// Names of the fields not read.
    unknown: Vec<String>,
}

/// The names of a flag definition's fields, as [`FlagParts`] reads them.
const FLAG_FIELDS: &str = "state, variants, defaultVariant, targeting, metadata";

/// A field name of a flag definition, told apart without allocating for the known ones.
enum FlagField {
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
    fn schema_fields(&self) -> schema::FlagFields<'_> {
        schema::FlagFields {
            state: self.state.as_ref(),
            variants: self.variants.as_ref(),
            default_variant: self.default_variant.as_ref(),
            targeting: self.targeting.as_ref(),
            metadata: self.metadata.as_ref(),
        }
    }
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

/// Warnings for the fields of a flag definition that are not read.
fn unknown_fields(key: &str, index: Option<usize>, parts: &FlagParts) -> Vec<Warning> {
    parts
        .unknown
        .iter()
        .map(|name| Warning {
            flag: Some(key.to_owned()),
            path: match index {
                Some(i) => format!("/flags/{i}/{}", escape_pointer(name)),
                None => format!("/flags/{}/{}", escape_pointer(key), escape_pointer(name)),
            },
            message: format!("unknown field `{name}` is ignored (a flag has {FLAG_FIELDS})"),
        })
        .collect()
}

fn build_flag_from_parts(
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
        None | Some(Value::Null) => Variants::default(),
        Some(Value::Object(variants)) => Variants::from(variants),
        Some(other) => {
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
    let raw_targeting = match targeting {
        None => None,
        Some(Value::Object(rule)) if rule.is_empty() => None,
        Some(rule) => Some(rule),
    };
    let targeting = match &raw_targeting {
        None => None,
        Some(rule) => Some(Rule::compile(rule).map_err(|source| LoadError::Rule {
            flag: key.clone(),
            at: locator.find_flag(&key),
            source,
        })?),
    };
    let raw_targeting = raw_targeting.as_ref().map(RawJson::from_value);

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
    })
}

/// Replaces every `{"$ref": "<evaluator>"}` by the evaluator (itself with references resolved), within
/// [`MAX_INLINED_NODES`]. The stack holds the evaluators being expanded, so a cycle leaves the inner
/// reference in place.
struct Inliner<'a> {
    evaluators: &'a Map<String, Value>,
    stack: Vec<&'a str>,
    /// JSON values still allowed to be added.
    budget: usize,
    /// Each evaluator's size with its references expanded (saturating), computed once; a reference back
    /// into an evaluator being measured counts as the two values it stays.
    expanded: std::collections::HashMap<&'a str, usize>,
}

impl<'a> Inliner<'a> {
    fn new(evaluators: &'a Map<String, Value>) -> Self {
        Inliner {
            evaluators,
            stack: Vec::new(),
            budget: MAX_INLINED_NODES,
            expanded: std::collections::HashMap::new(),
        }
    }

    fn inline(&mut self, value: &mut Value, depth: usize) -> Result<(), LoadError> {
        if depth > MAX_NESTING_DEPTH {
            return Err(LoadError::TooDeep);
        }
        match value {
            Value::Object(map) => {
                if let Some((name, evaluator)) = self.reference(map) {
                    // Refuse before copying: the memoised size catches doubling chains at once, the
                    // running budget everything else (its sizes are exact for what is copied).
                    let expanded = self.expanded_size(name, evaluator);
                    let own = count_nodes(evaluator);
                    if expanded > self.budget || own > self.budget {
                        return Err(LoadError::InliningTooLarge {
                            evaluator: name.to_owned(),
                            expanded,
                        });
                    }
                    self.budget -= own;
                    let mut replacement = evaluator.clone();
                    self.stack.push(name);
                    let result = self.inline(&mut replacement, depth);
                    self.stack.pop();
                    result?;
                    *value = replacement;
                    return Ok(());
                }
                for child in map.values_mut() {
                    self.inline(child, depth + 1)?;
                }
            }
            Value::Array(items) => {
                for child in items {
                    self.inline(child, depth + 1)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The evaluator an object refers to, when it is exactly `{"$ref": "<defined, not being expanded>"}`.
    fn reference(&self, map: &Map<String, Value>) -> Option<(&'a str, &'a Value)> {
        if map.len() != 1 {
            return None;
        }
        let Some(Value::String(name)) = map.get("$ref") else {
            return None;
        };
        let (name, evaluator) = self.evaluators.get_key_value(name.as_str())?;
        (!self.stack.contains(&name.as_str())).then_some((name.as_str(), evaluator))
    }

    fn expanded_size(&mut self, name: &'a str, evaluator: &'a Value) -> usize {
        if let Some(&size) = self.expanded.get(name) {
            return size;
        }
        let mut measuring = vec![name];
        let size = self.measure(evaluator, &mut measuring);
        self.expanded.insert(name, size);
        size
    }

    fn measure(&mut self, value: &'a Value, measuring: &mut Vec<&'a str>) -> usize {
        match value {
            Value::Object(map) => {
                if map.len() == 1
                    && let Some(Value::String(name)) = map.get("$ref")
                    && let Some((name, evaluator)) = self.evaluators.get_key_value(name.as_str())
                    && !measuring.contains(&name.as_str())
                {
                    if let Some(&size) = self.expanded.get(name.as_str()) {
                        return size;
                    }
                    measuring.push(name);
                    let size = self.measure(evaluator, measuring);
                    measuring.pop();
                    self.expanded.insert(name, size);
                    return size;
                }
                map.values().fold(1, |sum, child| {
                    sum.saturating_add(self.measure(child, measuring))
                })
            }
            Value::Array(items) => items.iter().fold(1, |sum, child| {
                sum.saturating_add(self.measure(child, measuring))
            }),
            _ => 1,
        }
    }
}

/// JSON values in a tree (every scalar, array and object).
fn count_nodes(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(count_nodes).sum::<usize>(),
        Value::Array(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        _ => 1,
    }
}

fn display_count(count: usize) -> String {
    if count == usize::MAX {
        "more than 2^64".to_owned()
    } else {
        count.to_string()
    }
}

fn parse_json(text: &str) -> Result<Value, LoadError> {
    serde_json::from_str(text).map_err(|e| LoadError::Syntax {
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })
}

/// serde_json appends " at line L column C" to its messages; the error carries them as fields already.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn parse_yaml(text: &str) -> Result<Value, LoadError> {
    // libyaml's flow-collection parsing is quadratic in nesting depth (100,000 `[` take minutes), and its
    // own recursion limit only applies afterwards; so measure flow nesting first.
    if yaml_flow_depth_exceeds(text, MAX_NESTING_DEPTH) {
        return Err(LoadError::TooDeep);
    }
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        LoadError::Syntax {
            line,
            column,
            message: strip_position(&e.to_string()),
        }
    })?;
    yaml_to_json(yaml, 1)
}

/// True when `[`/`{` outside quotes and comments outnumber their closers by more than `limit` at some point.
/// (Brackets inside plain or block scalars count too, so a document with more than `limit` unclosed brackets in
/// unquoted text is rejected; no flag document looks like that.)
fn yaml_flow_depth_exceeds(text: &str, limit: usize) -> bool {
    let mut depth = 0usize;
    let mut chars = text.chars();
    let mut previous = '\n';
    while let Some(c) = chars.next() {
        match c {
            '[' | '{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            '#' if previous.is_whitespace() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '\'' if !previous.is_alphanumeric() => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                }
            }
            _ => {}
        }
        previous = c;
    }
    false
}

/// Converts YAML to JSON the way flagd does (`sigs.k8s.io/yaml`): scalar keys become strings, tags are
/// dropped. A float that JSON cannot represent (NaN, infinity) is a syntax error.
fn yaml_to_json(value: serde_yaml_ng::Value, depth: usize) -> Result<Value, LoadError> {
    use serde_yaml_ng::Value as Y;
    if depth > MAX_NESTING_DEPTH {
        return Err(LoadError::TooDeep);
    }
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| LoadError::Syntax {
                        line: 0,
                        column: 0,
                        message: format!("{f} cannot be represented in JSON"),
                    })?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(|v| yaml_to_json(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(mapping) => {
            let mut map = Map::new();
            for (k, v) in mapping {
                let key = match k {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    Y::Null => "null".to_owned(),
                    _ => {
                        return Err(LoadError::Malformed {
                            path: String::new(),
                            message: "a YAML mapping key must be a scalar".into(),
                            at: Location::default(),
                        });
                    }
                };
                map.insert(key, yaml_to_json(v, depth + 1)?);
            }
            Value::Object(map)
        }
        Y::Tagged(tagged) => yaml_to_json(tagged.value, depth)?,
    })
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Finds where things are defined in the text, cheaply and approximately (only used for error messages).
struct Locator<'t> {
    text: &'t str,
    format: Format,
}

impl Locator<'_> {
    /// The first place `key` appears as an object key.
    fn find_key(&self, key: &str) -> Location {
        self.find_key_from(key, 0)
            .map(|i| self.location(i))
            .unwrap_or_default()
    }

    /// The definition of flag `key`: the key in the map form, the `"key": "<key>"` entry in the array form.
    fn find_flag(&self, key: &str) -> Location {
        let start = self.find_key_from("flags", 0).unwrap_or(0);
        if let Some(i) = self.find_key_from(key, start) {
            return self.location(i);
        }
        let quoted = serde_json::to_string(key).unwrap_or_default();
        let mut from = start;
        while let Some(i) = self.find_key_from("key", from) {
            let rest = self.text[i..].trim_start_matches(|c: char| c != ':');
            let rest = rest.get(1..).unwrap_or("").trim_start();
            if rest.starts_with(&quoted) || (self.format == Format::Yaml && rest.starts_with(key)) {
                return self.location(i);
            }
            from = i + 1;
        }
        Location::default()
    }

    /// Byte offset of `key` written as an object key (quoted, or bare in YAML) at or after `from`.
    fn find_key_from(&self, key: &str, from: usize) -> Option<usize> {
        let text = self.text.get(from..)?;
        let quoted = serde_json::to_string(key).ok()?;
        let mut best = find_before_colon(text, &quoted, false);
        if self.format == Format::Yaml {
            best = match (best, find_before_colon(text, key, true)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        best.map(|i| from + i)
    }

    fn location(&self, offset: usize) -> Location {
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        Location { line, column }
    }
}

/// The first occurrence of `pattern` followed by optional blanks and `:`; a `bare` pattern must also start
/// a YAML key (preceded by a blank, a newline or `-`).
fn find_before_colon(text: &str, pattern: &str, bare: bool) -> Option<usize> {
    if pattern.is_empty() {
        return None;
    }
    let mut offset = 0;
    while let Some(i) = text[offset..].find(pattern) {
        let at = offset + i;
        let after = text[at + pattern.len()..].trim_start_matches([' ', '\t']);
        let before_ok = !bare
            || text[..at]
                .chars()
                .next_back()
                .is_none_or(|c| matches!(c, ' ' | '\n' | '-'));
        if after.starts_with(':') && before_ok {
            return Some(at);
        }
        offset = at + pattern.len();
    }
    None
}
