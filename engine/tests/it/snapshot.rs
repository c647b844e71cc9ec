//! Snapshot: selectors, source priority and fallback, bulk selection, sync payload, change sets.

use std::collections::BTreeMap;
use std::sync::Arc;

use flagpole_engine::{
    ChangeKind, Flag, Format, LoadOptions, Selector, Snapshot, SourceFlags, parse_document,
};
use serde_json::{Value, json};

use crate::{load_json, testbed_dir};

fn source(name: &str, doc: Value) -> SourceFlags {
    SourceFlags {
        source: Arc::from(name),
        flags: load_json(&doc.to_string()).flags,
    }
}

fn flag(key: &str, variant: i64, set: Option<&str>) -> Value {
    let mut f =
        json!({"key": key, "state": "ENABLED", "variants": {"v": variant}, "defaultVariant": "v"});
    if let Some(set) = set {
        f["metadata"] = json!({"flagSetId": set});
    }
    f
}

fn value_of(flag: &Flag) -> &Value {
    flag.variants.get("v").expect("variant v")
}

fn sel(s: &str) -> Selector {
    s.parse().expect("valid selector")
}

#[test]
fn selector_grammar() {
    assert_eq!(sel(""), Selector::All);
    assert_eq!(sel("  "), Selector::All);
    assert_eq!(
        sel("source=file.json"),
        Selector::Source("file.json".into())
    );
    assert_eq!(sel("file.json"), Selector::Source("file.json".into()));
    assert_eq!(sel("flagSetId=app"), Selector::FlagSetId("app".into()));
    assert_eq!(sel("flagSetId="), Selector::FlagSetId(String::new()));
    assert_eq!(sel("flagSetId=a=b"), Selector::FlagSetId("a=b".into()));
    let err = "project=x".parse::<Selector>().unwrap_err();
    assert_eq!(err.key, "project");
    assert_eq!(sel("source=s").to_string(), "source=s");
}

#[test]
fn a_later_source_wins_and_the_earlier_comes_back_when_it_drops_the_key() {
    let low = source(
        "low",
        json!({"flags": [flag("k", 1, None), flag("only-low", 1, None)]}),
    );
    let high = source("high", json!({"flags": [flag("k", 2, None)]}));
    let snap = Snapshot::new(vec![low.clone(), high]);
    assert_eq!(value_of(snap.get("k", &Selector::All).unwrap()), &json!(2));
    assert_eq!(&*snap.record("k", &Selector::All).unwrap().source, "high");
    assert_eq!(snap.len(), 2);

    // The winning source drops `k`: flagd loses the flag (issue 1809); flagpole falls back to `low`.
    let high = source("high", json!({"flags": []}));
    let snap = Snapshot::new(vec![low, high]);
    assert_eq!(value_of(snap.get("k", &Selector::All).unwrap()), &json!(1));
    assert_eq!(&*snap.record("k", &Selector::All).unwrap().source, "low");
}

#[test]
fn within_one_source_the_later_definition_wins() {
    let s = source(
        "s",
        json!({"flags": [flag("k", 1, None), flag("k", 2, None)]}),
    );
    let snap = Snapshot::new(vec![s]);
    assert_eq!(snap.len(), 1);
    assert_eq!(value_of(snap.get("k", &Selector::All).unwrap()), &json!(2));
}

#[test]
fn selectors_pick_flag_sets_and_sources() {
    let a = source(
        "a",
        json!({"flags": [flag("k", 1, Some("x")), flag("k", 2, None)]}),
    );
    let b = source(
        "b",
        json!({"flags": [flag("k", 3, Some("y")), flag("k", 4, Some(""))]}),
    );
    let snap = Snapshot::new(vec![a, b]);
    assert_eq!(snap.len(), 4, "one record per (flagSetId, key)");
    assert_eq!(
        value_of(snap.get("k", &sel("flagSetId=x")).unwrap()),
        &json!(1)
    );
    assert_eq!(
        value_of(snap.get("k", &sel("flagSetId=")).unwrap()),
        &json!(2),
        "no set, not the empty set"
    );
    assert_eq!(
        value_of(snap.get("k", &sel("flagSetId=y")).unwrap()),
        &json!(3)
    );
    assert!(snap.get("k", &sel("flagSetId=z")).is_none());
    assert_eq!(
        value_of(snap.get("k", &sel("source=a")).unwrap()),
        &json!(2),
        "first in sort order: no set"
    );
    // No selector: the highest-priority source; between its two sets, the last in sort order.
    assert_eq!(value_of(snap.get("k", &Selector::All).unwrap()), &json!(3));
    assert!(snap.get("missing", &Selector::All).is_none());

    let all: Vec<(Option<&str>, i64)> = snap
        .select(&Selector::All)
        .map(|r| {
            (
                r.flag.flag_set_id.as_deref(),
                value_of(&r.flag).as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        all,
        [(None, 2), (Some(""), 4), (Some("x"), 1), (Some("y"), 3)]
    );
    assert_eq!(snap.select(&sel("source=b")).count(), 2);
}

#[test]
fn sync_payload_has_flagds_shape() {
    let s = source(
        "file.json",
        json!({"metadata": {"flagSetId": "set", "v": 1},
               "$evaluators": {"e": {"in": ["@", {"var": "email"}]}},
               "flags": {
                 "t": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
                       "targeting": {"if": [{"$ref": "e"}, "b"]}},
                 "s": {"state": "DISABLED", "variants": {"x": "y"}, "metadata": {"v": 2}}}}),
    );
    let snap = Snapshot::new(vec![s]);
    assert_eq!(
        snap.sync_payload(&Selector::All),
        concat!(
            r#"{"flags":{"s":{"state":"DISABLED","defaultVariant":"","variants":{"x":"y"},"source":"file.json","#,
            r#""metadata":{"flagSetId":"set","v":2}},"#,
            r#""t":{"state":"ENABLED","defaultVariant":"a","variants":{"a":1,"b":2},"#,
            r#""targeting":{"if":[{"in":["@",{"var":"email"}]},"b"]},"source":"file.json","#,
            r#""metadata":{"flagSetId":"set","v":1}}}}"#
        )
    );
    let plain = Snapshot::new(vec![source(
        "p",
        json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": true}}}}),
    )]);
    assert_eq!(
        plain.sync_payload(&Selector::All),
        r#"{"flags":{"f":{"state":"ENABLED","defaultVariant":"","variants":{"a":true},"source":"p"}}}"#
    );
    assert_eq!(plain.sync_payload(&sel("source=other")), r#"{"flags":{}}"#);
}

#[test]
fn sync_payload_round_trips_through_the_loader() {
    let text = std::fs::read_to_string(testbed_dir().join("evaluator/flags/testkit-flags.json"))
        .expect("readable");
    let first = Snapshot::new(vec![SourceFlags {
        source: Arc::from("src"),
        flags: load_json(&text).flags,
    }]);
    let payload = first.sync_payload(&Selector::All);
    let reloaded =
        parse_document(&payload, Format::Json, &LoadOptions::default()).expect("payload loads");
    let second = Snapshot::new(vec![SourceFlags {
        source: Arc::from("src"),
        flags: reloaded.flags,
    }]);
    assert_eq!(second.sync_payload(&Selector::All), payload);
    // Numbers take flagd's float64 form in the payload (`1.0` is written `1`), so the first load and the
    // reloaded one may differ in representation; from then on the payload is a fixed point: reloading it
    // again changes nothing.
    let third = Snapshot::new(vec![SourceFlags {
        source: Arc::from("src"),
        flags: parse_document(&payload, Format::Json, &LoadOptions::default())
            .expect("payload loads")
            .flags,
    }]);
    assert!(Snapshot::changes(&second, &third, &Selector::All).is_empty());
}

#[test]
fn sync_payloads_keep_empty_targeting_and_write_numbers_as_float64() {
    let flags = load_json(
        r#"{"flags": {"f": {"state": "ENABLED", "defaultVariant": "big",
              "variants": {"big": 9007199254740993, "one": 1.0, "half": 0.5},
              "targeting": {}, "metadata": {"n": 9007199254740993}}}}"#,
    )
    .flags;
    let payload = Snapshot::new(vec![SourceFlags {
        source: Arc::from("s"),
        flags,
    }])
    .sync_payload(&Selector::All);
    assert_eq!(
        payload,
        r#"{"flags":{"f":{"state":"ENABLED","defaultVariant":"big","variants":{"big":9007199254740992,"half":0.5,"one":1},"targeting":{},"source":"s","metadata":{"n":9007199254740992}}}}"#
    );
}

#[test]
fn changes_are_per_key() {
    let old = Snapshot::new(vec![source(
        "s",
        json!({"flags": [flag("same", 1, None), flag("changed", 1, None), flag("gone", 1, None)]}),
    )]);
    let new = Snapshot::new(vec![source(
        "s",
        json!({"flags": [flag("same", 1, None), flag("changed", 2, None), flag("new", 1, None)]}),
    )]);
    let expected: BTreeMap<String, ChangeKind> = [
        ("changed".to_owned(), ChangeKind::Update),
        ("gone".to_owned(), ChangeKind::Delete),
        ("new".to_owned(), ChangeKind::Write),
    ]
    .into();
    assert_eq!(Snapshot::changes(&old, &new, &Selector::All), expected);
    assert!(Snapshot::changes(&new, &new, &Selector::All).is_empty());
    assert_eq!(ChangeKind::Write.as_str(), "write");

    // Through a selector, only the selected flags count.
    let other = Snapshot::new(vec![
        source("s", json!({"flags": [flag("same", 1, None)]})),
        source("t", json!({"flags": [flag("t-only", 1, None)]})),
    ]);
    let changes = Snapshot::changes(&old, &other, &sel("source=s"));
    assert_eq!(changes.keys().collect::<Vec<_>>(), ["changed", "gone"]);

    // A source change alone is an update.
    let moved = Snapshot::new(vec![source("t", json!({"flags": [flag("same", 1, None)]}))]);
    let same = Snapshot::new(vec![source("s", json!({"flags": [flag("same", 1, None)]}))]);
    assert_eq!(
        Snapshot::changes(&same, &moved, &Selector::All).get("same"),
        Some(&ChangeKind::Update)
    );
}

#[test]
fn snapshot_is_shareable() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    let snap = Arc::new(Snapshot::new(vec![]));
    assert_send_sync(&snap);
    assert!(snap.is_empty());
}

#[test]
fn select_by_key_is_one_lookup_per_selected_key_in_key_order() {
    // What flagd's bulk evaluation does: the selected keys, sorted, each looked up again.
    fn reference<'s>(snap: &'s Snapshot, selector: &Selector) -> Vec<&'s Arc<Flag>> {
        let keys: std::collections::BTreeSet<&str> =
            snap.select(selector).map(|r| &*r.flag.key).collect();
        keys.into_iter()
            .filter_map(|key| snap.get(key, selector))
            .collect()
    }
    let layouts = [
        // No flag sets; a later source overrides a key.
        vec![
            source(
                "low",
                json!({"flags": [flag("b", 1, None), flag("a", 1, None), flag("c", 1, None)]}),
            ),
            source("high", json!({"flags": [flag("b", 2, None)]})),
        ],
        // One flag set.
        vec![source(
            "one",
            json!({"flags": [flag("y", 1, Some("s")), flag("x", 1, Some("s"))]}),
        )],
        // Unique keys whose flag sets order them out of key order.
        vec![source(
            "two",
            json!({"flags": [flag("z", 1, Some("a")), flag("a", 2, Some("b"))]}),
        )],
        // A key in two flag sets and in no set, from two sources.
        vec![
            source(
                "low",
                json!({"flags": [flag("k", 1, Some("a")), flag("k", 2, Some("b")), flag("m", 3, None)]}),
            ),
            source(
                "high",
                json!({"flags": [flag("k", 4, None), flag("a", 5, Some("b"))]}),
            ),
        ],
    ];
    let selectors = [
        "",
        "source=low",
        "source=high",
        "source=one",
        "source=two",
        "flagSetId=a",
        "flagSetId=b",
        "flagSetId=s",
        "flagSetId=",
        "flagSetId=none",
    ];
    for sources in layouts {
        let snap = Snapshot::new(sources);
        for selector in selectors.map(sel) {
            let got = snap.select_by_key(&selector);
            let want = reference(&snap, &selector);
            let keys =
                |flags: &[&Arc<Flag>]| flags.iter().map(|f| f.key.to_string()).collect::<Vec<_>>();
            assert_eq!(keys(&got), keys(&want), "{selector}");
            for (g, w) in got.iter().zip(&want) {
                assert!(Arc::ptr_eq(g, w), "{selector}: {}", g.key);
            }
        }
    }
}
