//! Unit tests, one per rule of `docs/targeting.md` (each test is named after its rule).

use serde_json::{Value, json};

use super::*;

fn run_full(
    rule: &Value,
    ctx: Value,
    flag_key: &str,
    alg: FractionalAlgorithm,
) -> Result<Value, TargetingError> {
    let rule = Rule::compile(rule).map_err(|e| TargetingError(e.0))?;
    let ctx = match ctx {
        Value::Object(m) => m,
        _ => Context::new(),
    };
    let data = Data {
        context: &ctx,
        flag_key,
        timestamp: 1_700_000_000,
        fractional: alg,
    };
    rule.apply(&data).map(Cow::into_owned)
}

fn run(rule: Value, ctx: Value) -> Result<Value, TargetingError> {
    run_full(&rule, ctx, "flag", FractionalAlgorithm::V2)
}

#[track_caller]
fn ok(rule: Value, ctx: Value) -> Value {
    match run(rule.clone(), ctx) {
        Ok(v) => v,
        Err(e) => panic!("rule {rule} failed: {e}"),
    }
}

#[track_caller]
fn err(rule: Value, ctx: Value) {
    let r = run(rule.clone(), ctx);
    assert!(r.is_err(), "rule {rule} should fail, got {r:?}");
}

// ---------------------------------------------------------------------------------------------------
// rule shapes

#[test]
fn empty_rule_is_an_empty_object() {
    assert_eq!(ok(json!({}), json!({})), json!({}));
}

#[test]
fn multi_key_object_is_a_literal() {
    let rule = json!({"a": {"var": "x"}, "b": 1});
    assert_eq!(ok(rule.clone(), json!({"x": 5})), rule);
}

#[test]
fn unknown_operator_is_an_error() {
    err(json!({"nope": [1]}), json!({}));
    err(json!({"fractionalEvaluation": ["x", ["a", 1]]}), json!({}));
    // A one-key object literal is an operator call too.
    err(json!({"if": [true, {"a": 1}, "no"]}), json!({}));
}

#[test]
fn leftover_ref_is_an_error() {
    err(json!({"$ref": "missing"}), json!({}));
    err(json!({"if": [{"$ref": "x"}, "a", "b"]}), json!({}));
}

#[test]
fn unknown_operator_errors_only_when_reached() {
    assert_eq!(
        ok(json!({"if": [true, "a", {"nope": 1}]}), json!({})),
        json!("a")
    );
    assert_eq!(
        ok(json!({"or": [true, {"nope": 1}]}), json!({})),
        json!(true)
    );
}

#[test]
fn scalar_and_array_rules() {
    assert_eq!(ok(json!("on"), json!({})), json!("on"));
    assert_eq!(ok(json!(null), json!({})), json!(null));
    assert_eq!(
        ok(
            json!([{"var": "a"}, [{"var": "b"}], 3]),
            json!({"a": 1, "b": 2})
        ),
        json!([1, [2], 3])
    );
}

#[test]
fn non_finite_result_is_an_error() {
    err(json!({"/": [1, 0]}), json!({}));
    err(json!({"%": [5, 0]}), json!({}));
    err(json!([{"/": [0, 0]}]), json!({}));
}

// ---------------------------------------------------------------------------------------------------
// truthiness and numbers

#[test]
fn truthiness() {
    for falsy in [json!(0), json!(""), json!([]), json!(null), json!(false)] {
        assert_eq!(
            ok(json!({"!!": [falsy.clone()]}), json!({})),
            json!(false),
            "{falsy}"
        );
    }
    for truthy in [
        json!("0"),
        json!([0]),
        json!(-1),
        json!("false"),
        json!({"a": 1, "b": 2}),
    ] {
        assert_eq!(
            ok(json!({"!!": [truthy.clone()]}), json!({})),
            json!(true),
            "{truthy}"
        );
    }
    assert_eq!(
        ok(json!({"!!": [{"var": "o"}]}), json!({"o": {}})),
        json!(false)
    );
}

#[test]
fn nan_is_truthy() {
    // Go: float64 NaN != 0. JavaScript and Python: falsy.
    assert_eq!(ok(json!({"!!": [{"/": [0, 0]}]}), json!({})), json!(true));
}

#[test]
fn numbers_are_float64() {
    assert_eq!(ok(json!({"===": [1, 1.0]}), json!({})), json!(true));
    assert_eq!(
        ok(
            json!({"==": [{"var": "big"}, 9007199254740993_u64]}),
            json!({"big": 9007199254740992_u64})
        ),
        json!(true)
    );
}

// ---------------------------------------------------------------------------------------------------
// var, missing, missing_some

#[test]
fn var_dotted_path() {
    assert_eq!(
        ok(
            json!({"var": "user.name"}),
            json!({"user": {"name": "ann"}})
        ),
        json!("ann")
    );
    assert_eq!(
        ok(
            json!({"var": "user..name"}),
            json!({"user": {"name": "ann"}})
        ),
        json!("ann")
    );
    assert_eq!(
        ok(json!({"var": "user.missing"}), json!({"user": {}})),
        json!(null)
    );
    assert_eq!(
        ok(
            json!({"var": "user.name.x"}),
            json!({"user": {"name": "ann"}})
        ),
        json!(null)
    );
}

#[test]
fn var_array_index_path() {
    let ctx = json!({"xs": [10, 20]});
    assert_eq!(ok(json!({"var": "xs.1"}), ctx.clone()), json!(20));
    assert_eq!(ok(json!({"var": "xs.5"}), ctx.clone()), json!(null));
    // A non-numeric part indexes element 0 (Go: ParseFloat fails → 0).
    assert_eq!(ok(json!({"var": "xs.x"}), ctx.clone()), json!(10));
    assert_eq!(ok(json!({"var": 1}), json!({"1": "one"})), json!("one"));
}

#[test]
fn var_default() {
    assert_eq!(
        ok(json!({"var": ["missing", "dflt"]}), json!({})),
        json!("dflt")
    );
    assert_eq!(
        ok(json!({"var": ["a", "dflt"]}), json!({"a": null})),
        json!("dflt")
    );
    assert_eq!(
        ok(json!({"var": ["a", "dflt"]}), json!({"a": false})),
        json!(false)
    );
    assert_eq!(
        ok(json!({"var": ["a", {"cat": ["x", "y"]}]}), json!({})),
        json!("xy")
    );
    // Three elements: no default.
    assert_eq!(ok(json!({"var": ["a", "d", "e"]}), json!({})), json!(null));
}

#[test]
fn var_flagd_properties_are_virtual() {
    assert_eq!(
        ok(json!({"var": "$flagd.flagKey"}), json!({})),
        json!("flag")
    );
    assert_eq!(
        ok(json!({"var": "$flagd.timestamp"}), json!({})),
        json!(1_700_000_000)
    );
    assert_eq!(
        ok(json!({"var": "$flagd"}), json!({})),
        json!({"flagKey": "flag", "timestamp": 1_700_000_000})
    );
    // A caller-supplied $flagd is overwritten.
    assert_eq!(
        ok(
            json!({"var": "$flagd.flagKey"}),
            json!({"$flagd": {"flagKey": "evil"}})
        ),
        json!("flag")
    );
    assert_eq!(
        ok(
            json!({"var": "$flagd.other"}),
            json!({"$flagd": {"other": 1}})
        ),
        json!(null)
    );
}

#[test]
fn var_whole_data() {
    assert_eq!(
        ok(json!({"var": ""}), json!({"a": 1})),
        json!({"a": 1, "$flagd": {"flagKey": "flag", "timestamp": 1_700_000_000}})
    );
    assert_eq!(ok(json!({"var": []}), json!({"a": 1}))["a"], json!(1));
    // nil name against object data: nil.
    assert_eq!(ok(json!({"var": null}), json!({"a": 1})), json!(null));
}

#[test]
fn var_with_wrong_name_type_is_an_error() {
    err(json!({"var": true}), json!({}));
    err(json!({"var": [1, "d"]}), json!({}));
    err(json!({"var": {"nope": 1}}), json!({}));
    // Against nil data Go returns the default before it looks at such a name.
    assert_eq!(
        ok(json!({"map": [[null], {"var": true}]}), json!({})),
        json!([null])
    );
    err(json!({"map": [[null], {"var": [1]}]}), json!({}));
}

#[test]
fn missing() {
    assert_eq!(
        ok(
            json!({"missing": ["a", "b", "c.d"]}),
            json!({"a": 1, "c": {"d": 0}})
        ),
        json!(["b"])
    );
    assert_eq!(ok(json!({"missing": "a"}), json!({})), json!(["a"]));
    assert_eq!(
        ok(json!({"missing": ["a"]}), json!({"a": null})),
        json!(["a"])
    );
    err(json!({"missing": 1}), json!({}));
}

#[test]
fn missing_some() {
    let ctx = json!({"a": 1});
    assert_eq!(
        ok(json!({"missing_some": [1, ["a", "b", "c"]]}), ctx.clone()),
        json!([])
    );
    assert_eq!(
        ok(json!({"missing_some": [2, ["a", "b", "c"]]}), ctx.clone()),
        json!(["b", "c"])
    );
    err(json!({"missing_some": [1]}), ctx.clone());
    err(json!({"missing_some": [null, ["a"]]}), ctx);
}

// ---------------------------------------------------------------------------------------------------
// if, and, or, !, !!

#[test]
fn if_multi_branch() {
    let rule = json!({"if": [{"==": [{"var": "x"}, 1]}, "one", {"==": [{"var": "x"}, 2]}, "two", "other"]});
    assert_eq!(ok(rule.clone(), json!({"x": 1})), json!("one"));
    assert_eq!(ok(rule.clone(), json!({"x": 2})), json!("two"));
    assert_eq!(ok(rule, json!({"x": 3})), json!("other"));
    assert_eq!(ok(json!({"?:": [false, "a", "b"]}), json!({})), json!("b"));
}

#[test]
fn if_without_else_returns_null() {
    assert_eq!(ok(json!({"if": [false, "a"]}), json!({})), json!(null));
    assert_eq!(ok(json!({"if": []}), json!({})), json!(null));
    assert_eq!(ok(json!({"if": [true]}), json!({})), json!(true));
}

#[test]
fn if_branch_object_is_applied_as_a_rule() {
    // Go's evaluateClause applies a one-key object that a branch returns.
    let ctx = json!({"rule": {"var": "x"}, "x": "hello", "obj": {"a": 1}, "two": {"a": 1, "b": 2}});
    assert_eq!(
        ok(json!({"if": [true, {"var": "rule"}]}), ctx.clone()),
        json!("hello")
    );
    err(json!({"if": [true, {"var": "obj"}]}), ctx.clone());
    assert_eq!(
        ok(json!({"if": [true, {"var": "two"}]}), ctx),
        json!({"a": 1, "b": 2})
    );
}

#[test]
fn if_with_non_array_argument_is_an_error() {
    err(json!({"if": true}), json!({}));
}

#[test]
fn and_or_return_the_deciding_value() {
    assert_eq!(ok(json!({"and": [1, "a", 0, 5]}), json!({})), json!(0));
    assert_eq!(ok(json!({"and": [1, "a"]}), json!({})), json!("a"));
    assert_eq!(
        ok(json!({"or": [0, "", "x", {"nope": 1}]}), json!({})),
        json!("x")
    );
    assert_eq!(ok(json!({"or": [0, false]}), json!({})), json!(false));
    assert_eq!(ok(json!({"and": []}), json!({})), json!(null));
    err(json!({"and": true}), json!({}));
}

#[test]
fn not_and_double_not() {
    assert_eq!(ok(json!({"!": [[]]}), json!({})), json!(true));
    assert_eq!(ok(json!({"!": []}), json!({})), json!(true));
    assert_eq!(ok(json!({"!": [0, 1]}), json!({})), json!(true));
    assert_eq!(ok(json!({"!": "a"}), json!({})), json!(false));
    assert_eq!(ok(json!({"!!": [[1]]}), json!({})), json!(true));
    assert_eq!(
        ok(json!({"!!": {"var": "missing"}}), json!({})),
        json!(false)
    );
}

// ---------------------------------------------------------------------------------------------------
// comparisons

#[test]
fn loose_equality() {
    let eq = |a: Value, b: Value| ok(json!({"==": [a, b]}), json!({}));
    assert_eq!(eq(json!("1"), json!(1)), json!(true));
    assert_eq!(eq(json!(true), json!(1)), json!(true));
    assert_eq!(eq(json!(true), json!("1")), json!(true));
    assert_eq!(eq(json!(""), json!(0)), json!(true));
    assert_eq!(eq(json!(null), json!(null)), json!(true));
    // Go: nil equals only nil; arrays are NaN. JavaScript says true to both.
    assert_eq!(eq(json!(null), json!(0)), json!(false));
    assert_eq!(eq(json!([]), json!(0)), json!(false));
    assert_eq!(eq(json!("a"), json!("a")), json!(true));
    assert_eq!(ok(json!({"==": [1]}), json!({})), json!(false));
    assert_eq!(ok(json!({"!=": [1, "2"]}), json!({})), json!(true));
    err(json!({"==": 1}), json!({}));
}

#[test]
fn strict_equality() {
    let seq = |a: Value, b: Value| ok(json!({"===": [a, b]}), json!({}));
    assert_eq!(seq(json!(1), json!("1")), json!(false));
    assert_eq!(seq(json!("a"), json!("a")), json!(true));
    assert_eq!(seq(json!(null), json!(null)), json!(true));
    assert_eq!(seq(json!([1]), json!([1])), json!(false));
    // Go's `int` from an empty `-` is not a float64.
    assert_eq!(ok(json!({"===": [{"-": []}, 0]}), json!({})), json!(false));
    assert_eq!(ok(json!({"===": "x"}), json!({})), json!(false));
    assert_eq!(ok(json!({"!==": [1, 2]}), json!({})), json!(true));
}

#[test]
fn mixed_type_and_missing_comparisons() {
    let ctx = json!({"n": 5});
    assert_eq!(
        ok(json!({"<": [{"var": "missing"}, 5]}), ctx.clone()),
        json!(true)
    );
    assert_eq!(
        ok(json!({">": [{"var": "missing"}, -1]}), ctx.clone()),
        json!(true)
    );
    assert_eq!(ok(json!({"<": ["a", 1]}), ctx.clone()), json!(false));
    assert_eq!(ok(json!({">=": ["a", 1]}), ctx.clone()), json!(false));
    assert_eq!(ok(json!({"<": ["10", "9"]}), ctx.clone()), json!(true));
    assert_eq!(ok(json!({"<": ["10", 9]}), ctx.clone()), json!(false));
    // `<=` uses Go's equals, where nil equals only nil (JavaScript: null <= 0 is true).
    assert_eq!(ok(json!({"<=": [null, 0]}), ctx.clone()), json!(false));
    assert_eq!(ok(json!({"<": [true, 2]}), ctx.clone()), json!(true));
    assert_eq!(ok(json!({"<": [1]}), ctx.clone()), json!(false));
    err(json!({"<": 1}), ctx);
}

#[test]
fn between_comparisons() {
    assert_eq!(ok(json!({"<": [1, 2, 3]}), json!({})), json!(true));
    assert_eq!(ok(json!({"<": [1, 3, 2]}), json!({})), json!(false));
    assert_eq!(ok(json!({"<=": [1, 1, 3]}), json!({})), json!(true));
    assert_eq!(ok(json!({">": [3, 2, 1]}), json!({})), json!(true));
    assert_eq!(ok(json!({">=": [3, 3, 4]}), json!({})), json!(false));
    // Four operands: only the first two count.
    assert_eq!(ok(json!({"<": [1, 2, 0, 5]}), json!({})), json!(true));
}

// ---------------------------------------------------------------------------------------------------
// arithmetic

#[test]
fn max_min() {
    assert_eq!(ok(json!({"max": [1, 3, 2]}), json!({})), json!(3));
    assert_eq!(ok(json!({"min": ["3", 2]}), json!({})), json!(2));
    assert_eq!(ok(json!({"max": []}), json!({})), json!(null));
    assert_eq!(ok(json!({"min": ["x"]}), json!({})), json!(0));
    err(json!({"max": [true]}), json!({}));
    err(json!({"max": [1, null]}), json!({}));
}

#[test]
fn arithmetic_on_strings_and_non_numbers() {
    assert_eq!(ok(json!({"+": ["1", "2"]}), json!({})), json!(3));
    assert_eq!(ok(json!({"+": ["a", 1]}), json!({})), json!(1));
    assert_eq!(ok(json!({"+": "5"}), json!({})), json!(5));
    assert_eq!(ok(json!({"*": ["2", 3]}), json!({})), json!(6));
    err(json!({"+": [1, null]}), json!({}));
    err(json!({"+": [1, true]}), json!({}));
    err(json!({"-": [1, [1]]}), json!({}));
    err(json!({"*": [{"var": "missing"}, 2]}), json!({}));
}

#[test]
fn arithmetic_arity() {
    assert_eq!(ok(json!({"+": []}), json!({})), json!(0));
    assert_eq!(ok(json!({"-": []}), json!({})), json!(0));
    assert_eq!(ok(json!({"-": [5]}), json!({})), json!(-5));
    assert_eq!(ok(json!({"-": [10, 2, 3]}), json!({})), json!(5));
    assert_eq!(ok(json!({"*": []}), json!({})), json!(1));
    assert_eq!(ok(json!({"/": []}), json!({})), json!(0));
    assert_eq!(ok(json!({"/": [9, 2]}), json!({})), json!(4.5));
    assert_eq!(ok(json!({"%": [7, 4]}), json!({})), json!(3));
    assert_eq!(ok(json!({"%": [-7, 4]}), json!({})), json!(-3));
    assert_eq!(ok(json!({"abs": -2}), json!({})), json!(2));
    err(json!({"%": [5]}), json!({}));
    err(json!({"-": 5}), json!({}));
}

#[test]
fn division_by_zero() {
    // Infinity is fine inside a comparison; only a non-finite result fails (Go's JSON encoder).
    assert_eq!(ok(json!({">": [{"/": [1, 0]}, 5]}), json!({})), json!(true));
    assert_eq!(
        ok(json!({"==": [{"/": [0, 0]}, {"/": [0, 0]}]}), json!({})),
        json!(false)
    );
    err(json!({"/": [1, 0]}), json!({}));
}

// ---------------------------------------------------------------------------------------------------
// strings and arrays

#[test]
fn in_strings() {
    assert_eq!(ok(json!({"in": ["ell", "hello"]}), json!({})), json!(true));
    assert_eq!(ok(json!({"in": ["", "hello"]}), json!({})), json!(true));
    assert_eq!(ok(json!({"in": ["x", "hello"]}), json!({})), json!(false));
    // A non-string needle in a string panics in Go.
    err(json!({"in": [1, "a1"]}), json!({}));
}

#[test]
fn in_arrays() {
    assert_eq!(ok(json!({"in": ["b", ["a", "b"]]}), json!({})), json!(true));
    assert_eq!(ok(json!({"in": [1, ["1", 2]]}), json!({})), json!(true));
    assert_eq!(ok(json!({"in": ["1", [1]]}), json!({})), json!(false));
    assert_eq!(ok(json!({"in": [null, [null]]}), json!({})), json!(true));
    assert_eq!(ok(json!({"in": [true, [1, true]]}), json!({})), json!(true));
    // Nested arrays are inclusive numeric ranges.
    assert_eq!(ok(json!({"in": [3, [[1, 5]]]}), json!({})), json!(true));
    assert_eq!(ok(json!({"in": [6, [[1, 5]]]}), json!({})), json!(false));
    // A number against a bool element panics (typing.ToNumber), unless found before.
    assert_eq!(ok(json!({"in": [1, [1, true]]}), json!({})), json!(true));
    err(json!({"in": [1, [true, 1]]}), json!({}));
}

#[test]
fn in_on_wrong_types() {
    assert_eq!(ok(json!({"in": ["a", 5]}), json!({})), json!(false));
    assert_eq!(ok(json!({"in": ["a", null]}), json!({})), json!(false));
    assert_eq!(ok(json!({"in": ["a"]}), json!({})), json!(false));
    assert_eq!(
        ok(json!({"in": [{"var": "missing"}, ["a"]]}), json!({})),
        json!(false)
    );
    err(json!({"in": "abc"}), json!({}));
    err(json!({"in": []}), json!({}));
}

#[test]
fn cat_number_formatting() {
    assert_eq!(
        ok(json!({"cat": [1.0, "-", 2.5]}), json!({})),
        json!("1-2.5")
    );
    assert_eq!(
        ok(json!({"cat": [1e21, ""]}), json!({})),
        json!("1000000000000000000000")
    );
    assert_eq!(
        ok(json!({"cat": [0.0000001, ""]}), json!({})),
        json!("0.0000001")
    );
    assert_eq!(ok(json!({"cat": [null, "a"]}), json!({})), json!("a"));
    assert_eq!(
        ok(
            json!({"cat": [{"var": "$flagd.flagKey"}, {"var": "id"}]}),
            json!({"id": 42})
        ),
        json!("flag42")
    );
}

#[test]
fn cat_trims_and_rejects_non_scalars() {
    assert_eq!(ok(json!({"cat": [" a", "b "]}), json!({})), json!("ab"));
    assert_eq!(ok(json!({"cat": [" a "]}), json!({})), json!(" a "));
    assert_eq!(ok(json!({"cat": "x"}), json!({})), json!("x"));
    assert_eq!(ok(json!({"cat": []}), json!({})), json!(""));
    err(json!({"cat": [true, "a"]}), json!({}));
    err(json!({"cat": [[1], "a"]}), json!({}));
    err(json!({"cat": 5}), json!({}));
}

#[test]
fn substr() {
    let s = |args: Value| ok(json!({"substr": args}), json!({}));
    assert_eq!(s(json!(["jsonlogic", 4])), json!("logic"));
    assert_eq!(s(json!(["jsonlogic", -5])), json!("logic"));
    assert_eq!(s(json!(["jsonlogic", 1, 3])), json!("son"));
    assert_eq!(s(json!(["jsonlogic", 4, -2])), json!("log"));
    assert_eq!(s(json!(["héllo", 1, 2])), json!("él"));
    assert_eq!(s(json!(["abc", 10])), json!("abc"));
    assert_eq!(s(json!(["abc", -10])), json!("abc"));
    assert_eq!(s(json!([5, 0])), json!("5"));
    err(json!({"substr": ["hello", 3, -4]}), json!({}));
    err(json!({"substr": ["abc"]}), json!({}));
    err(json!({"substr": [true, 0]}), json!({}));
}

#[test]
fn substr_of_null() {
    assert_eq!(ok(json!({"substr": [null, 0]}), json!({})), json!(""));
    assert_eq!(
        ok(json!({"substr": [{"var": "missing"}, 1, 2]}), json!({})),
        json!("")
    );
    err(json!({"substr": ["abc", null]}), json!({}));
}

#[test]
fn merge() {
    assert_eq!(
        ok(json!({"merge": [[1, 2], [3], 4]}), json!({})),
        json!([1, 2, 3, 4])
    );
    assert_eq!(ok(json!({"merge": [[[1]]]}), json!({})), json!([[1]]));
    assert_eq!(ok(json!({"merge": "a"}), json!({})), json!(["a"]));
    assert_eq!(ok(json!({"merge": []}), json!({})), json!([]));
    err(json!({"merge": null}), json!({}));
}

#[test]
fn array_results() {
    // Arrays are valid results; `evaluate` turns them into a GENERAL error.
    assert_eq!(
        ok(
            json!({"map": [{"var": "xs"}, {"*": [{"var": ""}, 2]}]}),
            json!({"xs": [1, 2]})
        ),
        json!([2, 4])
    );
}

// ---------------------------------------------------------------------------------------------------
// iterating operators

#[test]
fn map_over_literal_array_does_not_evaluate_elements() {
    assert_eq!(
        ok(
            json!({"map": [[{"var": "a"}], {"var": ""}]}),
            json!({"a": 1})
        ),
        json!([{"var": "a"}])
    );
    assert_eq!(
        ok(json!({"map": [{"var": "missing"}, {"var": ""}]}), json!({})),
        json!([])
    );
    assert_eq!(ok(json!({"map": [[1]]}), json!({})), json!([]));
    err(
        json!({"map": [{"var": "s"}, {"var": ""}]}),
        json!({"s": "abc"}),
    );
}

#[test]
fn filter_substitutes_outer_vars_first() {
    let ctx = json!({"xs": [1, 2, 3], "t": 1});
    assert_eq!(
        ok(
            json!({"filter": [{"var": "xs"}, {">": [{"var": ""}, {"var": "t"}]}]}),
            ctx
        ),
        json!([2, 3])
    );
    // An outer key shadows the element's field (JavaScript would keep {"name": "b"}).
    let ctx = json!({"users": [{"name": "a"}, {"name": "b"}], "name": "a"});
    assert_eq!(
        ok(
            json!({"filter": [{"var": "users"}, {"==": [{"var": "name"}, "b"]}]}),
            ctx
        ),
        json!([])
    );
    let ctx = json!({"users": [{"name": "a"}, {"name": "b"}]});
    assert_eq!(
        ok(
            json!({"filter": [{"var": "users"}, {"==": [{"var": "name"}, "b"]}]}),
            ctx
        ),
        json!([{"name": "b"}])
    );
}

#[test]
fn reduce() {
    let sum =
        json!({"reduce": [{"var": "xs"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]});
    assert_eq!(ok(sum.clone(), json!({"xs": [1, 2, 3]})), json!(6));
    assert_eq!(ok(sum.clone(), json!({"xs": [1, null, 2]})), json!(3));
    assert_eq!(ok(sum, json!({})), json!(0));
    let cat =
        json!({"reduce": [["a", "b"], {"cat": [{"var": "accumulator"}, {"var": "current"}]}, ""]});
    assert_eq!(ok(cat, json!({})), json!("ab"));
    assert_eq!(
        ok(json!({"reduce": [[1, 2], {"+": [1, 1]}]}), json!({})),
        json!(0)
    );
    err(json!({"reduce": [[1], {"+": [1, 1]}, null]}), json!({}));
    err(json!({"reduce": [[1], 5, 0]}), json!({}));
}

#[test]
fn all_some_none_over_null() {
    let ctx = json!({});
    let logic = json!({">": [{"var": ""}, 0]});
    assert_eq!(
        ok(
            json!({"all": [{"var": "missing"}, logic.clone()]}),
            ctx.clone()
        ),
        json!(false)
    );
    assert_eq!(
        ok(
            json!({"some": [{"var": "missing"}, logic.clone()]}),
            ctx.clone()
        ),
        json!(false)
    );
    assert_eq!(
        ok(
            json!({"none": [{"var": "missing"}, logic.clone()]}),
            ctx.clone()
        ),
        json!(true)
    );
    assert_eq!(
        ok(json!({"all": [[], logic.clone()]}), ctx.clone()),
        json!(false)
    );
    assert_eq!(ok(json!({"none": [[], logic]}), ctx), json!(true));
}

#[test]
fn all_some_none_over_arrays() {
    let logic = json!({">": [{"var": ""}, 1]});
    assert_eq!(
        ok(json!({"all": [[2, 3], logic.clone()]}), json!({})),
        json!(true)
    );
    assert_eq!(
        ok(json!({"all": [[1, 3], logic.clone()]}), json!({})),
        json!(false)
    );
    assert_eq!(
        ok(json!({"some": [[1, 3], logic.clone()]}), json!({})),
        json!(true)
    );
    assert_eq!(ok(json!({"none": [[0, 1], logic]}), json!({})), json!(true));
    let ctx = json!({"items": [{"id": 1}, {"id": 5}]});
    assert_eq!(
        ok(
            json!({"some": [{"var": "items"}, {"==": [{"var": "id"}, 5]}]}),
            ctx
        ),
        json!(true)
    );
}

#[test]
fn all_some_none_over_non_arrays() {
    err(
        json!({"all": [{"var": "s"}, {"var": ""}]}),
        json!({"s": "abc"}),
    );
    err(
        json!({"some": [{"var": "n"}, {"var": ""}]}),
        json!({"n": 5}),
    );
    // A raw string subject is neither an array nor an object: nil.
    assert_eq!(
        ok(json!({"all": ["abc", {"var": ""}]}), json!({})),
        json!(false)
    );
    err(json!({"all": []}), json!({}));
    // The condition must be an object after var substitution.
    err(json!({"all": [[{"a": true}], {"var": "a"}]}), json!({}));
}

// ---------------------------------------------------------------------------------------------------
// set and contains_*

#[test]
fn set_and_contains() {
    assert_eq!(
        ok(
            json!({"set": [{"var": "o"}, "k", 2]}),
            json!({"o": {"a": 1}})
        ),
        json!({"a": 1, "k": 2})
    );
    assert_eq!(
        ok(
            json!({"contains_all": [["a", "b", "c"], ["a", "b"]]}),
            json!({})
        ),
        json!(true)
    );
    assert_eq!(
        ok(json!({"contains_any": [["a"], ["x", "a"]]}), json!({})),
        json!(true)
    );
    assert_eq!(
        ok(json!({"contains_none": [["a"], ["x"]]}), json!({})),
        json!(true)
    );
    assert_eq!(ok(json!({"contains_all": "x"}), json!({})), json!(false));
    assert_eq!(ok(json!({"contains_none": 5}), json!({})), json!(true));
}

// ---------------------------------------------------------------------------------------------------
// starts_with, ends_with, sem_ver

#[test]
fn starts_with_ends_with() {
    let ctx = json!({"email": "user@faas.com", "n": 5});
    assert_eq!(
        ok(
            json!({"starts_with": [{"var": "email"}, "user@"]}),
            ctx.clone()
        ),
        json!(true)
    );
    assert_eq!(
        ok(
            json!({"ends_with": [{"var": "email"}, "faas.com"]}),
            ctx.clone()
        ),
        json!(true)
    );
    assert_eq!(
        ok(
            json!({"ends_with": [{"var": "email"}, "FAAS.com"]}),
            ctx.clone()
        ),
        json!(false)
    );
}

#[test]
fn starts_with_ends_with_errors_are_null() {
    let ctx = json!({"n": 5});
    assert_eq!(
        ok(json!({"starts_with": [{"var": "n"}, "5"]}), ctx.clone()),
        json!(null)
    );
    assert_eq!(
        ok(json!({"ends_with": ["a", "b", "c"]}), ctx.clone()),
        json!(null)
    );
    assert_eq!(ok(json!({"starts_with": "abc"}), ctx.clone()), json!(null));
    assert_eq!(
        ok(json!({"ends_with": [{"var": "missing"}, "x"]}), ctx),
        json!(null)
    );
}

#[test]
fn sem_ver() {
    let rule = |op: &str, target: Value| json!({"sem_ver": [{"var": "v"}, op, target]});
    let v = |s: Value| json!({"v": s});
    assert_eq!(
        ok(rule(">=", json!("1.2.0")), v(json!("1.10.0"))),
        json!(true)
    );
    assert_eq!(
        ok(rule("<", json!("v2.0.0")), v(json!("2.0.0-alpha"))),
        json!(true)
    );
    assert_eq!(
        ok(rule("=", json!("1.0.0+build")), v(json!("V1.0.0+other"))),
        json!(true)
    );
    assert_eq!(ok(rule("=", json!("2.0.0")), v(json!(2))), json!(true));
    assert_eq!(ok(rule("=", json!(1.2)), v(json!("1.2"))), json!(true));
    assert_eq!(
        ok(rule("^", json!("1.5.0")), v(json!("1.0.0"))),
        json!(true)
    );
    assert_eq!(
        ok(rule("~", json!("1.2.9")), v(json!("1.2.0"))),
        json!(true)
    );
    assert_eq!(
        ok(rule("~", json!("1.3.0")), v(json!("1.2.0"))),
        json!(false)
    );
    assert_eq!(
        ok(rule("!=", json!("1.0.1")), v(json!("1.0.0"))),
        json!(true)
    );
    // A computed operator and target take the general path.
    let dynamic = json!({"sem_ver": [{"var": "v"}, {"var": "op"}, {"var": "t"}]});
    assert_eq!(
        ok(dynamic, json!({"v": "1.0.0", "op": "<", "t": "1.0.1"})),
        json!(true)
    );
}

#[test]
fn sem_ver_errors_are_null() {
    let ctx = json!({"v": "1.0.0"});
    assert_eq!(
        ok(
            json!({"sem_ver": [{"var": "v"}, "===", "1.0.0"]}),
            ctx.clone()
        ),
        json!(null)
    );
    assert_eq!(
        ok(
            json!({"sem_ver": [{"var": "v"}, "=", "2.0.0.0"]}),
            ctx.clone()
        ),
        json!(null)
    );
    assert_eq!(
        ok(
            json!({"sem_ver": [{"var": "missing"}, "=", "1.0.0"]}),
            ctx.clone()
        ),
        json!(null)
    );
    assert_eq!(
        ok(json!({"sem_ver": [{"var": "v"}, "="]}), ctx.clone()),
        json!(null)
    );
    assert_eq!(
        ok(json!({"sem_ver": [{"var": "v"}, 1, "1.0.0"]}), ctx.clone()),
        json!(null)
    );
    assert_eq!(ok(json!({"sem_ver": "1.0.0"}), ctx), json!(null));
}

// ---------------------------------------------------------------------------------------------------
// fractional

fn frac(rule: &Value, ctx: Value, flag_key: &str, alg: FractionalAlgorithm) -> Value {
    match run_full(rule, ctx, flag_key, alg) {
        Ok(v) => v,
        Err(e) => panic!("{rule} failed: {e}"),
    }
}

fn four_suits() -> Value {
    json!({"fractional": [
        {"cat": [{"var": "$flagd.flagKey"}, {"var": "user.name"}]},
        ["clubs", 25], ["diamonds", 25], ["hearts", 25], ["spades", 25]
    ]})
}

#[test]
fn fractional_v2_vectors() {
    let rule = four_suits();
    for (name, suit) in [
        ("jack", "hearts"),
        ("queen", "spades"),
        ("ten", "clubs"),
        ("nine", "diamonds"),
        ("3", "clubs"),
    ] {
        let got = frac(
            &rule,
            json!({"user": {"name": name}}),
            "fractional-flag",
            FractionalAlgorithm::V2,
        );
        assert_eq!(got, json!(suit), "{name}");
    }
}

#[test]
fn fractional_default_key_is_flag_key_plus_targeting_key() {
    let rule = json!({"fractional": [["heads"], ["tails", 1]]});
    let key = "fractional-flag-shorthand";
    let v2 = FractionalAlgorithm::V2;
    assert_eq!(
        frac(&rule, json!({"targetingKey": "jon@company.com"}), key, v2),
        json!("heads")
    );
    assert_eq!(
        frac(&rule, json!({"targetingKey": "jane@company.com"}), key, v2),
        json!("tails")
    );
    // A null first argument (a missing var) falls back to the targeting key too.
    let with_null = json!({"fractional": [{"var": "missing"}, ["heads"], ["tails", 1]]});
    assert_eq!(
        frac(
            &with_null,
            json!({"targetingKey": "jane@company.com"}),
            key,
            v2
        ),
        json!("tails")
    );
}

#[test]
fn fractional_hash_edges() {
    let rule = json!({"fractional": [{"var": "targetingKey"}, ["lower", 50], ["upper", 50]]});
    for (key, want) in [
        ("ejOoVL", "lower"),
        ("bY9fO-", "lower"),
        ("SI7p-", "lower"),
        ("6LvT0", "upper"),
        ("ceQdGm", "upper"),
    ] {
        let got = frac(
            &rule,
            json!({"targetingKey": key}),
            "f",
            FractionalAlgorithm::V2,
        );
        assert_eq!(got, json!(want), "{key}");
    }
}

#[test]
fn fractional_missing_or_non_string_key() {
    let v2 = FractionalAlgorithm::V2;
    let short = json!({"fractional": [["a", 1], ["b", 1]]});
    assert_eq!(frac(&short, json!({}), "f", v2), json!(null));
    assert_eq!(
        frac(&short, json!({"targetingKey": ""}), "f", v2),
        json!(null)
    );
    assert_eq!(
        frac(&short, json!({"targetingKey": 5}), "f", v2),
        json!(null)
    );
    assert_eq!(
        frac(&short, json!({"targetingKey": null}), "f", v2),
        json!(null)
    );
    // A non-string, non-null bucketing value stays in the distributions and fails to parse: null.
    let numeric = json!({"fractional": [{"var": "id"}, ["a", 1], ["b", 1]]});
    assert_eq!(
        frac(&numeric, json!({"id": 5, "targetingKey": "x"}), "f", v2),
        json!(null)
    );
}

#[test]
fn fractional_weights() {
    let v2 = FractionalAlgorithm::V2;
    let ctx = || json!({"targetingKey": "any-user"});
    let f = |d: Value| frac(&json!({"fractional": d}), ctx(), "f", v2);
    assert_eq!(f(json!([["one", -50], ["two", 50]])), json!("two"));
    assert_eq!(f(json!([["one", 0], ["two", 0]])), json!(null));
    assert_eq!(f(json!([["one", 1.5], ["two", 1]])), json!(null));
    assert_eq!(f(json!([["one", 3.0]])), json!("one"));
    assert_eq!(f(json!([["one", "5"]])), json!(null));
    assert_eq!(f(json!([["one", null]])), json!("one"));
    assert_eq!(f(json!([["one", 2147483647]])), json!("one"));
    assert_eq!(f(json!([["one", 2147483648_u64]])), json!(null));
    assert_eq!(f(json!([["one", 2147483647], ["two", 1]])), json!(null));
    assert_eq!(f(json!([["one", 1], "two"])), json!(null));
    assert_eq!(f(json!([["one", 1], []])), json!(null));
    assert_eq!(f(json!([])), json!(null));
    assert_eq!(
        frac(&json!({"fractional": "x"}), ctx(), "f", v2),
        json!(null)
    );
}

#[test]
fn fractional_variants_may_be_computed_and_non_strings() {
    let v2 = FractionalAlgorithm::V2;
    let ctx = json!({"targetingKey": "u", "color": "red", "tier": "premium"});
    let f = |d: Value| frac(&json!({"fractional": d}), ctx.clone(), "f", v2);
    assert_eq!(f(json!([[true, 1]])), json!(true));
    assert_eq!(f(json!([[2.5, 1]])), json!(2.5));
    assert_eq!(f(json!([[null, 1]])), json!(null));
    assert_eq!(f(json!([[["x"], 1]])), json!(null));
    assert_eq!(f(json!([[{"var": "color"}, 1]])), json!("red"));
    let weight = json!({"if": [{"==": [{"var": "tier"}, "premium"]}, 100, 0]});
    assert_eq!(f(json!([["red", weight], ["blue", 0]])), json!("red"));
}

#[test]
fn fractional_outside_object_data_is_null() {
    let rule = json!({"map": [[1], {"fractional": ["k", ["a", 1]]}]});
    assert_eq!(ok(rule, json!({})), json!([null]));
}

#[test]
fn fractional_distribution_within_one_percent() {
    let rule = Rule::compile(&json!({"fractional": [["a", 25], ["b", 25], ["c", 50]]}))
        .unwrap_or_else(|e| panic!("{e}"));
    for alg in [FractionalAlgorithm::V2, FractionalAlgorithm::V3] {
        let mut counts = std::collections::HashMap::<String, u32>::new();
        let mut ctx = Context::new();
        for i in 0..100_000 {
            ctx.insert("targetingKey".into(), json!(format!("user-{i}")));
            let data = Data {
                context: &ctx,
                flag_key: "rollout",
                timestamp: 0,
                fractional: alg,
            };
            let v = rule.apply(&data).unwrap_or_else(|e| panic!("{e}"));
            *counts
                .entry(v.as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        for (name, share) in [("a", 25_000), ("b", 25_000), ("c", 50_000)] {
            let got = counts.get(name).copied().unwrap_or(0);
            assert!(got.abs_diff(share) <= 1_000, "{alg:?} {name}: {got}");
        }
    }
}

#[test]
fn fractional_is_stable() {
    // Pinned: a change here re-buckets users.
    let rule = json!({"fractional": [["a", 50], ["b", 50]]});
    let got: Vec<Value> = (0..8)
        .map(|i| {
            frac(
                &rule,
                json!({"targetingKey": format!("user-{i}")}),
                "stable",
                FractionalAlgorithm::V2,
            )
        })
        .collect();
    let again: Vec<Value> = (0..8)
        .map(|i| {
            frac(
                &rule,
                json!({"targetingKey": format!("user-{i}")}),
                "stable",
                FractionalAlgorithm::V2,
            )
        })
        .collect();
    assert_eq!(got, again);
    let h = murmur3_32(b"stableuser-0");
    let want = if (u64::from(h) * 100) >> 32 < 50 {
        "a"
    } else {
        "b"
    };
    assert_eq!(got[0], json!(want));
}

#[test]
fn fractional_v3_hashes_canonical_cbor() {
    use super::fractional::v3_hash;
    let h = |bytes: &[u8]| murmur3_32(bytes);
    assert_eq!(v3_hash(&json!("a")), h(&[0x61, b'a']));
    assert_eq!(v3_hash(&json!(true)), h(&[0xf5]));
    assert_eq!(v3_hash(&json!(0)), h(&[0x00]));
    assert_eq!(v3_hash(&json!(-0.0)), h(&[0x00]));
    assert_eq!(v3_hash(&json!(1.0)), h(&[0x01]));
    assert_eq!(v3_hash(&json!(-1)), h(&[0x20]));
    assert_eq!(v3_hash(&json!(24)), h(&[0x18, 24]));
    assert_eq!(v3_hash(&json!(100000)), h(&[0x1a, 0x00, 0x01, 0x86, 0xa0]));
    assert_eq!(
        v3_hash(&json!(-2147483649_i64)),
        h(&[0x3a, 0x80, 0x00, 0x00, 0x00])
    );
    assert_eq!(v3_hash(&json!(1.5)), h(&[0xf9, 0x3e, 0x00]));
    assert_eq!(
        v3_hash(&json!(100000.5)),
        h(&[0xfa, 0x47, 0xc3, 0x50, 0x40])
    );
    assert_eq!(
        v3_hash(&json!(1.1)),
        h(&[0xfb, 0x3f, 0xf1, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a])
    );
    assert_eq!(
        v3_hash(&json!(1e20)),
        h(&[0xfb, 0x44, 0x15, 0xaf, 0x1d, 0x78, 0xb5, 0x8c, 0x40])
    );
    // Keys sort by encoded bytes: shorter first.
    assert_eq!(
        v3_hash(&json!({"aa": 2, "b": 1})),
        h(&[0xa2, 0x61, b'b', 0x01, 0x62, b'a', b'a', 0x02])
    );
    assert_eq!(v3_hash(&json!([null, []])), h(&[0x82, 0xf6, 0x80]));
}

#[test]
fn fractional_v3_default_key_is_an_array() {
    let rule = json!({"fractional": [["a", 50], ["b", 50]]});
    let mut bytes = vec![0x82, 0x64];
    bytes.extend_from_slice(b"flag");
    bytes.push(0x63);
    bytes.extend_from_slice(b"bob");
    let want = if (u64::from(murmur3_32(&bytes)) * 100) >> 32 < 50 {
        "a"
    } else {
        "b"
    };
    assert_eq!(
        frac(
            &rule,
            json!({"targetingKey": "bob"}),
            "flag",
            FractionalAlgorithm::V3
        ),
        json!(want)
    );
    // Pinned against the flagd testbed's v3 vectors.
    let shorthand = json!({"fractional": [["heads"], ["tails", 1]]});
    for (tk, want) in [
        ("user-1", "heads"),
        ("user-2", "tails"),
        ("jon@company.com", "tails"),
    ] {
        let got = frac(
            &shorthand,
            json!({"targetingKey": tk}),
            "fractional-flag-shorthand",
            FractionalAlgorithm::V3,
        );
        assert_eq!(got, json!(want), "{tk}");
    }
}

#[test]
fn fractional_v3_accepts_non_string_keys_and_rejects_null() {
    let v3 = FractionalAlgorithm::V3;
    let rule = json!({"fractional": [{"var": "id"}, ["a", 50], ["b", 50]]});
    let want = if (u64::from(murmur3_32(&[0x05])) * 100) >> 32 < 50 {
        "a"
    } else {
        "b"
    };
    assert_eq!(frac(&rule, json!({"id": 5}), "f", v3), json!(want));
    assert_eq!(
        frac(&rule, json!({"targetingKey": "x"}), "f", v3),
        json!(null)
    );
    let short = json!({"fractional": [["a", 1]]});
    assert_eq!(
        frac(&short, json!({"targetingKey": 5}), "f", v3),
        json!(null)
    );
    assert_eq!(frac(&short, json!({}), "f", v3), json!(null));
    // The suits vectors differ from v2 (everyone is re-bucketed).
    let suits = four_suits();
    for (name, suit) in [
        ("jack", "diamonds"),
        ("queen", "diamonds"),
        ("ten", "clubs"),
        ("nine", "clubs"),
        ("3", "spades"),
    ] {
        assert_eq!(
            frac(
                &suits,
                json!({"user": {"name": name}}),
                "fractional-flag",
                v3
            ),
            json!(suit),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------------------
// limits

fn nested(depth: usize) -> Value {
    let mut v = json!(true);
    for _ in 1..depth {
        v = json!({"!!": v});
    }
    v
}

#[test]
fn rule_depth_limit() {
    // Each `{"!!": …}` level is one object level.
    assert!(Rule::compile(&nested(MAX_RULE_DEPTH)).is_ok());
    assert!(Rule::compile(&nested(MAX_RULE_DEPTH + 1)).is_err());
    assert_eq!(ok(nested(MAX_RULE_DEPTH), json!({})), json!(true));
}

#[test]
fn rule_size_limit() {
    let big = Value::Array(vec![json!(1); MAX_RULE_NODES]);
    assert!(Rule::compile(&json!({"in": [1, big]})).is_err());
    let fine = Value::Array(vec![json!(1); 10_000]);
    assert!(Rule::compile(&json!({"in": [1, fine]})).is_ok());
}

#[test]
fn runaway_reapplication_is_an_error_not_a_stack_overflow() {
    // The context holds a rule that re-applies itself through `if` (flagd would overflow its stack).
    let ctx = json!({"x": {"if": [true, {"var": "x"}]}});
    err(json!({"if": [true, {"var": "x"}]}), ctx);
}

// ---------------------------------------------------------------------------------------------------
// property: nothing panics

mod prop {
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::super::*;

    const OPS: &[&str] = &[
        "var",
        "if",
        "?:",
        "==",
        "===",
        "!=",
        "!==",
        "<",
        "<=",
        ">",
        ">=",
        "!",
        "!!",
        "and",
        "or",
        "in",
        "cat",
        "substr",
        "merge",
        "missing",
        "missing_some",
        "max",
        "min",
        "+",
        "-",
        "*",
        "/",
        "%",
        "abs",
        "map",
        "filter",
        "reduce",
        "all",
        "none",
        "some",
        "set",
        "contains_all",
        "contains_any",
        "contains_none",
        "fractional",
        "sem_ver",
        "starts_with",
        "ends_with",
        "nope",
        "$ref",
    ];

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-5i64..30).prop_map(|n| json!(n)),
            (-1e3f64..1e3).prop_map(|f| json!(f)),
            prop::sample::select(vec![
                "",
                "a",
                "x.y",
                "1",
                "0",
                "$flagd.flagKey",
                "targetingKey",
                "1.2.3",
                "=",
                "^",
                " "
            ])
            .prop_map(|s| json!(s)),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(5, 48, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                (prop::sample::select(OPS.to_vec()), inner.clone())
                    .prop_map(|(op, args)| Value::Object(Map::from_iter([(op.to_owned(), args)]))),
                prop::collection::btree_map("[a-c]", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Every `if` step's result is its taken child's (unless the branch was applied again), and every
    /// fractional step's recomputed choice is its result.
    fn check_steps(step: &Step) -> Result<(), String> {
        if step.evaluated && step.error.is_none() {
            match &step.detail {
                Some(Detail::Branch { taken: Some(i) }) => {
                    let Some(child) = step.children.get(*i) else {
                        return Ok(());
                    };
                    if child.result != step.result {
                        return Err(format!(
                            "if took child {i} = {:?} but gave {:?}",
                            child.result, step.result
                        ));
                    }
                }
                Some(Detail::Branch { taken: None }) if step.result != Some(Value::Null) => {
                    return Err(format!("an if without a branch gave {:?}", step.result));
                }
                Some(Detail::Fractional(f))
                    if step.result != Some(f.chosen.clone().unwrap_or(Value::Null)) =>
                {
                    return Err(format!(
                        "fractional chose {:?} but gave {:?}",
                        f.chosen, step.result
                    ));
                }
                Some(Detail::Fractional(f)) => {
                    // What v2 shows as the bucketing key is what it hashed.
                    if let (Some(hash), Value::String(key), "v2") =
                        (f.hash, &f.bucketing_key, f.algorithm)
                        && murmur3_32(key.as_bytes()) != hash
                    {
                        return Err(format!(
                            "fractional shows key {key:?} but hashed something else"
                        ));
                    }
                }
                _ => {}
            }
        }
        step.children.iter().try_for_each(check_steps)
    }

    /// Targeting as people write it: conditions over context attributes, `fractional` splits, nested `if`s.
    fn realistic_rule() -> impl Strategy<Value = Value> {
        let attr = prop::sample::select(vec![
            "email",
            "age",
            "version",
            "country",
            "targetingKey",
            "missing",
        ]);
        let lit = prop_oneof![
            "[a-c]{0,2}(@x\\.io)?".prop_map(|s| json!(s)),
            (0i64..100).prop_map(|n| json!(n)),
            Just(json!("1.2.3")),
            Just(json!(null)),
        ];
        let leaf_cond = prop_oneof![
            (attr.clone(), lit.clone()).prop_map(|(a, l)| json!({"==": [{"var": a}, l]})),
            (attr.clone(), prop::collection::vec(lit.clone(), 0..4))
                .prop_map(|(a, l)| json!({"in": [{"var": a}, l]})),
            "[a-c]{0,2}".prop_map(|p| json!({"starts_with": [{"var": "email"}, p]})),
            "[a-c@.]{0,3}".prop_map(|p| json!({"ends_with": [{"var": "email"}, p]})),
            (0i64..100).prop_map(|n| json!({">=": [{"var": "age"}, n]})),
            (
                prop::sample::select(vec!["=", "!=", "<", ">=", "^", "~", "?"]),
                prop::sample::select(vec!["1.2.3", "v2.0.0", "1.2.3-rc.1", "x"])
            )
                .prop_map(|(op, v)| json!({"sem_ver": [{"var": "version"}, op, v]})),
        ];
        let cond = leaf_cond.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(|c| json!({"and": c})),
                prop::collection::vec(inner.clone(), 0..3).prop_map(|c| json!({"or": c})),
                inner.prop_map(|c| json!({"!": c})),
            ]
        });
        let variant = prop::sample::select(vec!["on", "off", "blue", ""]).prop_map(|v| json!(v));
        let dist = (
            variant.clone(),
            prop_oneof![(0i64..100).prop_map(|w| json!(w)), Just(json!(null))],
        )
            .prop_map(|(v, w)| {
                if w.is_null() {
                    json!([v])
                } else {
                    json!([v, w])
                }
            });
        let key = prop_oneof![
            Just(None),
            Just(Some(json!({"var": "email"}))),
            Just(Some(
                json!({"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]})
            )),
            Just(Some(json!({"var": "age"}))),
        ];
        let fractional = (key, prop::collection::vec(dist, 1..5)).prop_map(|(key, dists)| {
            let mut args: Vec<Value> = key.into_iter().collect();
            args.extend(dists);
            json!({"fractional": args})
        });
        let result = prop_oneof![variant, Just(json!(null)), fractional];
        result.prop_recursive(3, 16, 4, move |inner| {
            (
                prop::collection::vec((cond.clone(), inner.clone()), 1..3),
                prop::option::of(inner),
            )
                .prop_map(|(arms, otherwise)| {
                    let mut items = Vec::new();
                    for (c, r) in arms {
                        items.push(c);
                        items.push(r);
                    }
                    items.extend(otherwise);
                    json!({"if": items})
                })
        })
    }

    fn realistic_context() -> impl Strategy<Value = Context> {
        (
            prop::option::of("[a-z0-9-]{0,12}"),
            prop::option::of("[a-c]{0,2}@x\\.io"),
            prop::option::of(0i64..100),
            prop::option::of(prop::sample::select(vec![
                "1.2.3",
                "2.0.0",
                "1.2.3-rc.1",
                "v1.3",
                "bad",
            ])),
        )
            .prop_map(|(tk, email, age, version)| {
                let mut ctx = Context::new();
                if let Some(tk) = tk {
                    ctx.insert("targetingKey".into(), json!(tk));
                }
                if let Some(e) = email {
                    ctx.insert("email".into(), json!(e));
                }
                if let Some(a) = age {
                    ctx.insert("age".into(), json!(a));
                }
                if let Some(v) = version {
                    ctx.insert("version".into(), json!(v));
                }
                ctx
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]
        #[test]
        fn explain_agrees_with_evaluation_on_realistic_targeting(rule in realistic_rule(), ctx in realistic_context(), v3 in any::<bool>()) {
            let compiled = Rule::compile(&rule).expect("generated rules are within the limits");
            let alg = if v3 { FractionalAlgorithm::V3 } else { FractionalAlgorithm::V2 };
            let data = Data { context: &ctx, flag_key: "flag-a", timestamp: 1, fractional: alg };
            let evaluated = compiled.apply(&data).map(std::borrow::Cow::into_owned).map_err(|e| e.0);
            let (step, result) = explain_rule(&rule, &data, None);
            prop_assert_eq!(&result, &evaluated, "rule {} context {:?}", rule, ctx);
            if let Err(wrong) = check_steps(&step) {
                prop_assert!(false, "{} in rule {} context {:?}", wrong, rule, ctx);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]
        #[test]
        fn explain_agrees_with_evaluation(rule in value(), ctx in prop::collection::btree_map("[a-c]|targetingKey|x", value(), 0..4), v3 in any::<bool>()) {
            if let Ok(compiled) = Rule::compile(&rule) {
                let ctx: Context = ctx.into_iter().collect();
                let alg = if v3 { FractionalAlgorithm::V3 } else { FractionalAlgorithm::V2 };
                let data = Data { context: &ctx, flag_key: "f", timestamp: 1, fractional: alg };
                let evaluated = compiled.apply(&data).map(std::borrow::Cow::into_owned).map_err(|e| e.0);
                let (step, result) = explain_rule(&rule, &data, None);
                prop_assert_eq!(&result, &evaluated, "rule {} context {:?}", rule, ctx);
                if let Err(wrong) = check_steps(&step) {
                    prop_assert!(false, "{} in rule {} context {:?}", wrong, rule, ctx);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        #[test]
        fn no_panic_for_arbitrary_rules_and_contexts(rule in value(), ctx in prop::collection::btree_map("[a-c]|targetingKey|x", value(), 0..4), v3 in any::<bool>()) {
            if let Ok(rule) = Rule::compile(&rule) {
                let ctx: Context = ctx.into_iter().collect();
                let alg = if v3 { FractionalAlgorithm::V3 } else { FractionalAlgorithm::V2 };
                let data = Data { context: &ctx, flag_key: "f", timestamp: 1, fractional: alg };
                let _ = rule.apply(&data);
            }
        }
    }
}

#[test]
fn rules_are_shareable_across_threads() {
    fn assert_traits<T: Clone + std::fmt::Debug + Send + Sync>() {}
    assert_traits::<Rule>();
}

#[test]
fn deep_rules_fit_a_two_megabyte_stack() {
    // tokio workers run with 2 MiB stacks; so does this check (debug builds have the largest frames).
    let handle = std::thread::Builder::new().stack_size(2 << 20).spawn(|| {
        for op in ["all", "some", "none", "map", "filter"] {
            let mut rule = json!({"var": ""});
            let mut depth = 1;
            while depth + 3 <= MAX_RULE_DEPTH {
                rule = json!({op: [[{"a": 1, "b": 2}], rule]});
                depth += 3;
            }
            let r = run(rule, json!({"a": 1}));
            assert!(r.is_ok(), "{op}: {r:?}");
        }
        let mut ifs = json!("leaf");
        for _ in 1..MAX_RULE_DEPTH / 2 - 1 {
            ifs = json!({"if": [{"and": [true]}, ifs]});
        }
        assert!(run(ifs, json!({})).is_ok());
    });
    assert!(handle.is_ok_and(|h| h.join().is_ok()));
}
