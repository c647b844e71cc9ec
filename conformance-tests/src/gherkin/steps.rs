//! Step definitions for the testbed's provider/daemon vocabulary (`docs/conformance.md#how-it-works`). Every step is
//! registered for Given, When and Then, since the feature files use them interchangeably. A step that is
//! not defined here is skipped by cucumber, and skipped steps fail the run.
//!
//! Config steps drive the provider's option builder with the scenario's own environment map (never the
//! process environment); provider steps drive the [`Launcher`](crate::launcher::Launcher).

use std::time::Duration;

use cucumber::gherkin::Step;
use cucumber::{given, then, when};
use open_feature::FlagMetadataValue;

use super::harness;
use super::world::{
    EVENT_WAIT, FlagRequest, FlagdWorld, Kind, OptionSetting, expected_text, json_equal,
    option_text, parse_typed,
};

#[given(regex = r#"^an option "([^"]*)" of type "([^"]*)" with value "(.*)"$"#)]
#[when(regex = r#"^an option "([^"]*)" of type "([^"]*)" with value "(.*)"$"#)]
fn option(world: &mut FlagdWorld, name: String, ty: String, value: String) {
    world.options.push(OptionSetting { name, ty, value });
}

#[given(regex = r#"^an environment variable "([^"]*)" with value "(.*)"$"#)]
#[when(regex = r#"^an environment variable "([^"]*)" with value "(.*)"$"#)]
fn environment_variable(world: &mut FlagdWorld, name: String, value: String) {
    world.env.insert(name, value);
}

#[given(regex = r"^a config was initialized$")]
#[when(regex = r"^a config was initialized$")]
fn config_initialized(world: &mut FlagdWorld) {
    world.initialize_config();
}

#[then(regex = r#"^the option "([^"]*)" of type "([^"]*)" should have the value "(.*)"$"#)]
fn option_has_value(world: &mut FlagdWorld, name: String, ty: String, value: String) {
    let options = match &world.config {
        Some(Ok(options)) => options,
        Some(Err(error)) => panic!("config failed: {error}"),
        None => panic!("missing `a config was initialized`"),
    };
    let actual = option_text(options, &name);
    let expected = expected_text(&ty, &value);
    assert_eq!(actual, expected, "option {name} ({ty})");
}

#[then(regex = r"^we should have an error$")]
fn config_error(world: &mut FlagdWorld) {
    match &world.config {
        Some(Err(_)) => {}
        Some(Ok(options)) => panic!("expected a config error, got {options:?}"),
        None => panic!("missing `a config was initialized`"),
    }
}

#[given(regex = r"^an? (\S+) flagd provider$")]
#[when(regex = r"^an? (\S+) flagd provider$")]
async fn provider(world: &mut FlagdWorld, name: String) {
    world.start_provider(&name).await;
}

#[given(
    regex = r#"^an? (Boolean|String|Integer|Float|Object)-flag with key "([^"]*)" and a default value "(.*)"$"#
)]
#[when(
    regex = r#"^an? (Boolean|String|Integer|Float|Object)-flag with key "([^"]*)" and a default value "(.*)"$"#
)]
fn flag(world: &mut FlagdWorld, ty: String, key: String, default: String) {
    world.flag = Some(FlagRequest { ty, key, default });
}

#[given(
    regex = r#"^a context containing a key "([^"]*)", with type "([^"]*)" and with value "(.*)"$"#
)]
#[when(
    regex = r#"^a context containing a key "([^"]*)", with type "([^"]*)" and with value "(.*)"$"#
)]
fn context_key(world: &mut FlagdWorld, key: String, ty: String, value: String) {
    world.add_context(&key, &ty, &value);
}

#[given(
    regex = r#"^a context containing a nested property with outer key "([^"]*)" and inner key "([^"]*)", with value "(.*)"$"#
)]
#[when(
    regex = r#"^a context containing a nested property with outer key "([^"]*)" and inner key "([^"]*)", with value "(.*)"$"#
)]
fn context_nested(world: &mut FlagdWorld, outer: String, inner: String, value: String) {
    world.add_nested_context(&outer, &inner, &value);
}

#[given(regex = r#"^a context containing a targeting key with value "(.*)"$"#)]
#[when(regex = r#"^a context containing a targeting key with value "(.*)"$"#)]
fn context_targeting_key(world: &mut FlagdWorld, value: String) {
    let context = std::mem::take(&mut world.context);
    world.context = context.with_targeting_key(value);
}

#[given(regex = r"^the flag was evaluated with details$")]
#[when(regex = r"^the flag was evaluated with details$")]
#[then(regex = r"^the flag was evaluated with details$")]
async fn evaluated(world: &mut FlagdWorld) {
    world.evaluate().await;
}

#[then(regex = r#"^the resolved details value should be "(.*)"$"#)]
fn value_is(world: &mut FlagdWorld, expected: String) {
    let ty = world
        .flag
        .as_ref()
        .map(|flag| flag.ty.clone())
        .unwrap_or_default();
    let expected = parse_typed(&ty, &expected);
    let details = world.details();
    assert!(
        json_equal(&details.value, &expected),
        "value {} (reason {}, error {:?}), expected {expected}",
        details.value,
        details.reason,
        details.error_code
    );
}

#[then(regex = r#"^the reason should be "([^"]*)"$"#)]
fn reason_is(world: &mut FlagdWorld, expected: String) {
    let details = world.details();
    assert_eq!(
        details.reason, expected,
        "reason (value {}, error {:?})",
        details.value, details.error_code
    );
}

#[then(regex = r#"^the error-code should be "([^"]*)"$"#)]
fn error_code_is(world: &mut FlagdWorld, expected: String) {
    let expected = (!expected.is_empty()).then_some(expected);
    assert_eq!(world.details().error_code, expected, "error code");
}

#[then(regex = r#"^the variant should be "([^"]*)"$"#)]
fn variant_is(world: &mut FlagdWorld, expected: String) {
    let details = world.details();
    // An empty expected variant means "no variant" (a default or disabled result).
    let actual = details.variant.as_deref().unwrap_or_default();
    assert_eq!(actual, expected, "variant (reason {})", details.reason);
}

#[then(regex = r"^the resolved metadata should contain$")]
fn metadata_contains(world: &mut FlagdWorld, step: &Step) {
    let table = step
        .table
        .as_ref()
        .unwrap_or_else(|| panic!("the step needs a table"));
    let metadata = &world.details().metadata;
    for row in table.rows.iter().skip(1) {
        let [key, ty, value] = row.as_slice() else {
            panic!("metadata rows need key | metadata_type | value, got {row:?}");
        };
        let actual = metadata
            .values
            .get(key)
            .unwrap_or_else(|| panic!("metadata has no {key:?}: {:?}", metadata.values));
        let matches = match (ty.as_str(), actual) {
            ("String", FlagMetadataValue::String(actual)) => actual == value,
            ("Integer" | "Long", FlagMetadataValue::Int(actual)) => {
                value.trim().parse::<i64>().is_ok_and(|v| v == *actual)
            }
            ("Float" | "Double", FlagMetadataValue::Float(actual)) => value
                .trim()
                .parse::<f64>()
                .is_ok_and(|v| (v - actual).abs() < 1e-9),
            ("Boolean", FlagMetadataValue::Bool(actual)) => {
                value.trim().eq_ignore_ascii_case(&actual.to_string())
            }
            _ => false,
        };
        assert!(matches, "metadata {key}: {actual:?}, expected {ty} {value}");
    }
}

#[then(regex = r"^the resolved metadata is empty$")]
fn metadata_empty(world: &mut FlagdWorld) {
    let metadata = &world.details().metadata;
    assert!(
        metadata.values.is_empty(),
        "metadata not empty: {:?}",
        metadata.values
    );
}

#[given(regex = r"^an? (ready|error|stale|change) event handler$")]
#[when(regex = r"^an? (ready|error|stale|change) event handler$")]
fn event_handler(world: &mut FlagdWorld, kind: String) {
    world.add_handler(event_kind(&kind));
}

#[given(regex = r"^an? (ready|error|stale|change) event was fired$")]
#[when(regex = r"^an? (ready|error|stale|change) event was fired$")]
#[then(regex = r"^an? (ready|error|stale|change) event was fired$")]
async fn event_fired(world: &mut FlagdWorld, kind: String) {
    let kind = event_kind(&kind);
    let event = world.expect_event(kind, EVENT_WAIT).await;
    if kind == Kind::Change {
        world.last_change = Some(event);
    }
}

#[then(
    regex = r"^the (ready|error|stale|change) event handler should have been executed(?: within (\d+)ms)?$"
)]
async fn handler_executed(world: &mut FlagdWorld, kind: String, within: String) {
    let kind = event_kind(&kind);
    let wait = if within.is_empty() {
        EVENT_WAIT
    } else {
        Duration::from_millis(
            within
                .parse()
                .unwrap_or_else(|_| panic!("{within:?} is not a number of milliseconds")),
        )
    };
    let event = world.expect_event(kind, wait).await;
    if kind == Kind::Change {
        world.last_change = Some(event);
    }
}

#[then(regex = r"^the (ready|error|stale|change) event handler should not have been executed$")]
fn handler_not_executed(world: &mut FlagdWorld, kind: String) {
    let kind = event_kind(&kind);
    let executions = world.executions(kind);
    assert_eq!(executions, 0, "the {kind:?} handler was executed");
}

#[given(regex = r"^the connection is lost for (\d+)s$")]
#[when(regex = r"^the connection is lost for (\d+)s$")]
async fn connection_lost(_world: &mut FlagdWorld, seconds: u64) {
    harness()
        .launcher
        .restart(seconds)
        .await
        .unwrap_or_else(|error| panic!("launcher restart: {error}"));
}

#[given(regex = r"^the flag was modified$")]
#[when(regex = r"^the flag was modified$")]
async fn flag_modified(_world: &mut FlagdWorld) {
    harness()
        .launcher
        .change()
        .await
        .unwrap_or_else(|error| panic!("launcher change: {error}"));
}

#[then(regex = r"^the flag should be part of the event payload$")]
fn flag_in_payload(world: &mut FlagdWorld) {
    let key = world
        .flag
        .as_ref()
        .map(|flag| flag.key.clone())
        .unwrap_or_else(|| panic!("no flag in this scenario"));
    let event = world
        .last_change
        .as_ref()
        .unwrap_or_else(|| panic!("no change event was consumed"));
    assert!(
        event.flags_changed.contains(&key),
        "{key} not in the change event's flags {:?}",
        event.flags_changed
    );
}

#[then(regex = r"^the client should be in fatal state$")]
fn fatal_state(world: &mut FlagdWorld) {
    let state = world.provider().state();
    assert_eq!(
        state,
        flagpole_provider::ProviderState::Fatal,
        "provider state"
    );
}

fn event_kind(name: &str) -> Kind {
    Kind::parse(name).unwrap_or_else(|| panic!("unknown event kind {name:?}"))
}
