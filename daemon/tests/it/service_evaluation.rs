//! flagd.evaluation.v1, flagd.evaluation.v2 and schema.v1 over real gRPC: typed values, reasons, fallbacks,
//! error statuses, selectors, metadata and context assembly.

use std::collections::BTreeMap;

use crate::service_support::Settings;
use flagpole_proto::evaluation_v1 as v1;
use flagpole_proto::evaluation_v2 as v2;
use flagpole_proto::schema_v1 as schema;
use prost_types::Struct;
use prost_types::value::Kind;
use serde_json::json;
use tonic::Code;

use crate::service_support::{Harness, context, json_of, with_headers};

fn config() -> Settings {
    Settings {
        context_values: BTreeMap::from([("region".to_owned(), "eu".to_owned())]),
        header_to_context: vec![("X-Tier".to_owned(), "tier".to_owned())],
        ..Settings::default()
    }
}

async fn v1_client(h: &Harness) -> v1::service_client::ServiceClient<tonic::transport::Channel> {
    v1::service_client::ServiceClient::new(h.channel().await)
}

async fn v2_client(h: &Harness) -> v2::service_client::ServiceClient<tonic::transport::Channel> {
    v2::service_client::ServiceClient::new(h.channel().await)
}

async fn schema_client(
    h: &Harness,
) -> schema::service_client::ServiceClient<tonic::transport::Channel> {
    schema::service_client::ServiceClient::new(h.channel().await)
}

fn bool_req(key: &str) -> v1::ResolveBooleanRequest {
    v1::ResolveBooleanRequest {
        flag_key: key.into(),
        context: None,
    }
}

#[tokio::test]
async fn v1_typed_resolves_return_value_variant_static_reason_and_metadata() {
    let h = Harness::start(config()).await;
    let mut c = v1_client(&h).await;

    let r = c
        .resolve_boolean(bool_req("bool-flag"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant.as_str()),
        (true, "STATIC", "on")
    );
    // Set metadata merged under flag metadata; null values left out.
    assert_eq!(
        json_of(r.metadata.as_ref()),
        json!({"flagSetId": "set-a", "team": "core", "owner": "alice"})
    );

    let r = c
        .resolve_string(v1::ResolveStringRequest {
            flag_key: "string-flag".into(),
            context: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value.as_str(), r.reason.as_str(), r.variant.as_str()),
        ("#f00", "STATIC", "red")
    );

    // ResolveInt truncates a float value.
    let r = c
        .resolve_int(v1::ResolveIntRequest {
            flag_key: "int-flag".into(),
            context: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.value, r.variant.as_str()), (2, "two"));

    let r = c
        .resolve_float(v1::ResolveFloatRequest {
            flag_key: "int-flag".into(),
            context: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, 2.7);

    let r = c
        .resolve_object(v1::ResolveObjectRequest {
            flag_key: "object-flag".into(),
            context: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(json_of(r.value.as_ref()), json!({"a": 1.0, "b": "x"}));
    assert_eq!(r.variant, "obj");
}

#[tokio::test]
async fn v1_disabled_flag_is_a_zero_value_success() {
    let h = Harness::start(config()).await;
    let r = v1_client(&h)
        .await
        .resolve_boolean(bool_req("disabled-flag"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant.as_str()),
        (false, "DISABLED", "")
    );
}

#[tokio::test]
async fn v1_errors_follow_flagds_status_table() {
    let h = Harness::start(config()).await;
    let mut c = v1_client(&h).await;
    let cases = [
        ("missing-flag", Code::NotFound, "Flag not found"),
        // v1 cannot say "no value": a code default is FLAG_NOT_FOUND.
        ("no-default-flag", Code::NotFound, "Flag not found"),
        (
            "parse-error-flag",
            Code::DataLoss,
            "Error parsing input or configuration",
        ),
        ("general-error-flag", Code::Unknown, "General error"),
    ];
    for (key, code, message) in cases {
        let status = c.resolve_boolean(bool_req(key)).await.unwrap_err();
        assert_eq!((status.code(), status.message()), (code, message), "{key}");
    }
    let status = c
        .resolve_string(v1::ResolveStringRequest {
            flag_key: "bool-flag".into(),
            context: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::InvalidArgument, "Type mismatch error")
    );
}

#[tokio::test]
async fn malformed_or_oversized_requests_are_rejected() {
    let h = Harness::start(Settings {
        max_request_body: 4096,
        ..config()
    })
    .await;
    let mut c = v1_client(&h).await;
    let req = |context| v1::ResolveBooleanRequest {
        flag_key: "bool-flag".into(),
        context: Some(context),
    };

    let mut nan = Struct::default();
    nan.fields.insert(
        "x".into(),
        prost_types::Value {
            kind: Some(Kind::NumberValue(f64::NAN)),
        },
    );
    let status = c.resolve_boolean(req(nan.clone())).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = c
        .resolve_all(v1::ResolveAllRequest { context: Some(nan) })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // Deeper than MAX_STRUCT_DEPTH (but within prost's own decoding limit).
    let mut deep = Struct::default();
    for _ in 0..flagpole::protocols::grpc::MAX_STRUCT_DEPTH {
        let mut outer = Struct::default();
        outer.fields.insert(
            "a".into(),
            prost_types::Value {
                kind: Some(Kind::StructValue(deep)),
            },
        );
        deep = outer;
    }
    let status = c.resolve_boolean(req(deep.clone())).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = c
        .resolve_all(v1::ResolveAllRequest {
            context: Some(deep),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let mut big = Struct::default();
    big.fields.insert(
        "blob".into(),
        prost_types::Value {
            kind: Some(Kind::StringValue("x".repeat(8192))),
        },
    );
    let status = c.resolve_boolean(req(big.clone())).await.unwrap_err();
    // flagd answers RESOURCE_EXHAUSTED (tonic's own code would be OUT_OF_RANGE).
    assert_eq!(status.code(), Code::ResourceExhausted);
    // ResolveAll (its own route, `--max-request-body` alike) on v1 and schema.v1.
    let status = c
        .resolve_all(v1::ResolveAllRequest {
            context: Some(big.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let status = schema_client(&h)
        .await
        .resolve_all(schema::ResolveAllRequest { context: Some(big) })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);

    // The server is unaffected.
    assert!(
        c.resolve_boolean(bool_req("bool-flag"))
            .await
            .unwrap()
            .into_inner()
            .value
    );
}

#[tokio::test]
async fn targeting_reads_the_body_context() {
    let h = Harness::start(config()).await;
    let mut c = v1_client(&h).await;
    let matched = c
        .resolve_string(v1::ResolveStringRequest {
            flag_key: "targeted-flag".into(),
            context: context(json!({"email": "a@example.com"})),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            matched.value.as_str(),
            matched.reason.as_str(),
            matched.variant.as_str()
        ),
        ("YES", "TARGETING_MATCH", "yes")
    );
    let fell_back = c
        .resolve_string(v1::ResolveStringRequest {
            flag_key: "targeted-flag".into(),
            context: context(json!({})),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (fell_back.value.as_str(), fell_back.reason.as_str()),
        ("NO", "DEFAULT")
    );
}

#[tokio::test]
async fn static_values_and_mapped_headers_override_the_body_context() {
    let h = Harness::start(Settings {
        context_values: BTreeMap::from([("user".to_owned(), "bob".to_owned())]),
        header_to_context: vec![("X-Tier".to_owned(), "tier".to_owned())],
        ..Settings::default()
    })
    .await;
    let mut c = v1_client(&h).await;
    let req = |ctx| v1::ResolveStringRequest {
        flag_key: "context-flag".into(),
        context: context(ctx),
    };

    // -X user=bob beats the body's user.
    let r = c
        .resolve_string(req(json!({"user": "carol"})))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.variant, "silver");
    // -H x-tier (sent in any case) beats the body's tier.
    let r = c
        .resolve_string(with_headers(
            req(json!({"tier": "bronze"})),
            &[("x-tier", "gold")],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.variant, "gold");
    // An empty header value is ignored.
    let r = c
        .resolve_string(with_headers(
            req(json!({"tier": "gold"})),
            &[("x-tier", "")],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.variant, "gold");

    // schema.v1 applies -X but not -H.
    let mut s = schema_client(&h).await;
    let r = s
        .resolve_string(with_headers(
            schema::ResolveStringRequest {
                flag_key: "context-flag".into(),
                context: context(json!({})),
            },
            &[("x-tier", "gold")],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.variant, "silver");
}

#[tokio::test]
async fn selector_header_scopes_lookups_and_is_reflected_in_metadata() {
    let h = Harness::start(config()).await;
    let mut c = v1_client(&h).await;

    let r = c
        .resolve_string(with_headers(
            v1::ResolveStringRequest {
                flag_key: "other-flag".into(),
                context: None,
            },
            &[("flagd-selector", "flagSetId=set-b")],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, "B");
    assert_eq!(json_of(r.metadata.as_ref()), json!({"flagSetId": "set-b"}));

    let status = c
        .resolve_boolean(with_headers(
            bool_req("bool-flag"),
            &[("flagd-selector", "flagSetId=set-b")],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    // A bare string means source=; the reflection then carries `source`.
    let r = c
        .resolve_boolean(with_headers(
            bool_req("bool-flag"),
            &[("flagd-selector", "file-a.json")],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(json_of(r.metadata.as_ref())["source"], "file-a.json");

    let status = c
        .resolve_boolean(with_headers(
            bool_req("bool-flag"),
            &[("flagd-selector", "owner=x")],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        r#"invalid selector key "owner", valid keys: "flagSetId", "source""#
    );
}

#[tokio::test]
async fn v1_resolve_all_follows_flagds_inclusion_rules() {
    let h = Harness::start(config()).await;
    let r = v1_client(&h)
        .await
        .resolve_all(v1::ResolveAllRequest { context: None })
        .await
        .unwrap()
        .into_inner();
    use v1::any_flag::Value as V;
    let value = |key: &str| r.flags.get(key).and_then(|f| f.value.clone());

    assert_eq!(value("bool-flag"), Some(V::BoolValue(true)));
    assert_eq!(value("string-flag"), Some(V::StringValue("#f00".into())));
    // Integers come back as doubles (and are not truncated: the bulk type is float64).
    assert_eq!(value("int-flag"), Some(V::DoubleValue(2.7)));
    assert_eq!(value("float-flag"), Some(V::DoubleValue(0.5)));
    assert!(matches!(value("object-flag"), Some(V::ObjectValue(_))));
    assert_eq!(r.flags["bool-flag"].reason, "STATIC");
    assert_eq!(
        json_of(r.flags["bool-flag"].metadata.as_ref())["owner"],
        "alice"
    );

    let disabled = &r.flags["disabled-flag"];
    assert_eq!(
        (disabled.reason.as_str(), disabled.variant.as_str()),
        ("DISABLED", "")
    );
    assert_eq!(disabled.value, Some(V::BoolValue(false)));

    let failed = &r.flags["parse-error-flag"];
    assert_eq!(
        (failed.reason.as_str(), failed.value.clone()),
        ("ERROR", Some(V::BoolValue(false)))
    );

    assert!(
        !r.flags.contains_key("no-default-flag"),
        "default-less flags are left out"
    );
    assert!(
        !r.flags.contains_key("array-flag"),
        "array-typed flags are left out"
    );
    assert!(r.flags.contains_key("other-flag"));
    assert_eq!(json_of(r.metadata.as_ref()), json!({}));

    let selected = v1_client(&h)
        .await
        .resolve_all(with_headers(
            v1::ResolveAllRequest { context: None },
            &[("flagd-selector", "flagSetId=set-b")],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(selected.flags.keys().collect::<Vec<_>>(), ["other-flag"]);
    assert_eq!(
        json_of(selected.metadata.as_ref()),
        json!({"flagSetId": "set-b"})
    );
}

#[tokio::test]
async fn v2_leaves_value_and_variant_unset_for_disabled_and_code_default() {
    let h = Harness::start(config()).await;
    let mut c = v2_client(&h).await;
    let req = |key: &str| v2::ResolveBooleanRequest {
        flag_key: key.into(),
        context: None,
    };

    let r = c
        .resolve_boolean(req("bool-flag"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant.as_deref()),
        (Some(true), "STATIC", Some("on"))
    );
    assert_eq!(json_of(r.metadata.as_ref())["owner"], "alice");

    let r = c
        .resolve_boolean(req("disabled-flag"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant),
        (None, "DISABLED", None)
    );

    let r = c
        .resolve_boolean(req("no-default-flag"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant),
        (None, "DEFAULT", None)
    );

    let status = c.resolve_boolean(req("missing-flag")).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let r = c
        .resolve_int(v2::ResolveIntRequest {
            flag_key: "int-flag".into(),
            context: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, Some(2));
    let r = c
        .resolve_float(v2::ResolveFloatRequest {
            flag_key: "float-flag".into(),
            context: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, Some(0.5));
    let r = c
        .resolve_string(v2::ResolveStringRequest {
            flag_key: "string-flag".into(),
            context: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value.as_deref(), Some("#f00"));
    let r = c
        .resolve_object(v2::ResolveObjectRequest {
            flag_key: "object-flag".into(),
            context: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(json_of(r.value.as_ref()), json!({"a": 1.0, "b": "x"}));

    let status = c
        .resolve_int(v2::ResolveIntRequest {
            flag_key: "string-flag".into(),
            context: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::InvalidArgument, "Type mismatch error")
    );
    let status = c
        .resolve_boolean(req("parse-error-flag"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DataLoss);
}

#[tokio::test]
async fn schema_v1_answers_code_default_with_default_not_fallback() {
    let h = Harness::start(config()).await;
    let mut c = schema_client(&h).await;
    let req = |key: &str| schema::ResolveBooleanRequest {
        flag_key: key.into(),
        context: None,
    };

    let r = c
        .resolve_boolean(req("bool-flag"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant.as_str()),
        (true, "STATIC", "on")
    );
    let r = c
        .resolve_boolean(req("no-default-flag"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant.as_str()),
        (false, "DEFAULT", "")
    );
    let r = c
        .resolve_boolean(req("disabled-flag"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.value, r.reason.as_str()), (false, "DISABLED"));
    let status = c.resolve_boolean(req("missing-flag")).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = c
        .resolve_boolean(req("general-error-flag"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unknown);

    let r = c
        .resolve_int(schema::ResolveIntRequest {
            flag_key: "int-flag".into(),
            context: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, 2);
    let r = c
        .resolve_float(schema::ResolveFloatRequest {
            flag_key: "float-flag".into(),
            context: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, 0.5);
    let r = c
        .resolve_string(schema::ResolveStringRequest {
            flag_key: "string-flag".into(),
            context: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, "#f00");
    let r = c
        .resolve_object(schema::ResolveObjectRequest {
            flag_key: "object-flag".into(),
            context: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(json_of(r.value.as_ref())["b"], "x");

    let all = c
        .resolve_all(schema::ResolveAllRequest { context: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        all.flags["bool-flag"].value,
        Some(schema::any_flag::Value::BoolValue(true))
    );
    assert!(!all.flags.contains_key("no-default-flag"));
}

#[tokio::test]
async fn evaluations_are_counted_in_metrics() {
    let h = Harness::start(config()).await;
    let mut c = v1_client(&h).await;
    c.resolve_boolean(bool_req("bool-flag")).await.unwrap();
    let _ = c.resolve_boolean(bool_req("missing-flag")).await;
    let text = h.metrics.encode();
    let impression = text
        .lines()
        .find(|l| l.starts_with("feature_flag_flagd_impression_total") && l.contains("bool-flag"))
        .unwrap_or_else(|| panic!("no impression for bool-flag in:\n{text}"));
    assert!(impression.ends_with(" 1"), "{impression}");
    assert!(text.lines().any(|l| l.contains("FLAG_NOT_FOUND")), "{text}");
}

/// A codec that sends raw bytes and ignores the answer body, to send what no generated client can.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<()>, tonic::Status> {
        use bytes::Buf;
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

#[tokio::test]
async fn malformed_protobuf_is_invalid_argument_on_every_service() {
    let h = Harness::start(config()).await;
    // Field 2 (`context`, a message) sent with the varint wire type: not decodable.
    let garbage = vec![0x10, 0x01];
    for path in [
        "/flagd.evaluation.v1.Service/ResolveBoolean",
        "/flagd.evaluation.v2.Service/ResolveString",
        "/schema.v1.Service/ResolveInt",
        "/flagd.sync.v1.FlagSyncService/FetchAllFlags",
    ] {
        let mut grpc = tonic::client::Grpc::new(h.channel().await);
        grpc.ready().await.unwrap();
        let status = grpc
            .unary(
                tonic::Request::new(garbage.clone()),
                http::uri::PathAndQuery::from_static(path),
                RawCodec,
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status:?}");
    }
    // ResolveAll's only field, `context` (1, a message), sent with the varint wire type. ResolveAll is
    // answered by its own route (written as bytes); its requests are read alike.
    for path in [
        "/flagd.evaluation.v1.Service/ResolveAll",
        "/schema.v1.Service/ResolveAll",
    ] {
        let mut grpc = tonic::client::Grpc::new(h.channel().await);
        grpc.ready().await.unwrap();
        let status = grpc
            .unary(
                tonic::Request::new(vec![0x08, 0x01]),
                http::uri::PathAndQuery::from_static(path),
                RawCodec,
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status:?}");
    }
}

#[tokio::test]
async fn resolve_all_keeps_the_variant_of_a_type_mismatch_and_int_follows_go() {
    let h = Harness::start(Settings::default()).await;
    h.store.replace_source(
        0,
        vec![
            // Targeting picks a variant of another type than the default's: flagd's ResolveAll answers
            // ERROR with the zero value of the default's type and keeps the variant.
            crate::service_support::flag(
                "mixed",
                json!({"state": "ENABLED", "variants": {"a": true, "b": "text"}, "defaultVariant": "a",
                       "targeting": {"if": [true, "b", "a"]}}),
                json!({}),
            ),
            crate::service_support::flag(
                "huge",
                json!({"state": "ENABLED", "variants": {"big": 1e21}, "defaultVariant": "big"}),
                json!({}),
            ),
        ],
    );
    h.store.replace_source(1, Vec::new());
    let mut client = v1_client(&h).await;
    let all = client
        .resolve_all(v1::ResolveAllRequest { context: None })
        .await
        .expect("ResolveAll")
        .into_inner();
    let mixed = &all.flags["mixed"];
    assert_eq!(
        (mixed.reason.as_str(), mixed.variant.as_str()),
        ("ERROR", "b")
    );
    assert_eq!(
        mixed.value,
        Some(v1::any_flag::Value::BoolValue(false)),
        "{mixed:?}"
    );
    // A float beyond int64 through ResolveInt: Go's int64(f) on amd64 gives the minimum.
    let huge = client
        .resolve_int(v1::ResolveIntRequest {
            flag_key: "huge".into(),
            context: None,
        })
        .await
        .expect("ResolveInt")
        .into_inner();
    assert_eq!(huge.value, i64::MIN);
}

#[tokio::test]
async fn resolve_all_reflects_a_source_selector_without_its_credentials() {
    let h = Harness::start(config()).await;
    let request = with_headers(
        v1::ResolveAllRequest { context: None },
        &[(
            "flagd-selector",
            "source=https://user:s3cret@flags.example/f.json",
        )],
    );
    let answer = v1_client(&h)
        .await
        .resolve_all(request)
        .await
        .unwrap()
        .into_inner();
    let text = format!("{answer:?}");
    assert!(!text.contains("s3cret"), "{text}");
    assert!(text.contains("https://***@flags.example/f.json"), "{text}");
}
