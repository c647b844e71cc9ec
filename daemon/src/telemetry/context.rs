//! W3C trace context (`traceparent`, `docs/observability.md#trace-context`) and the sampling decision.
//!
//! A request's `traceparent` header names the caller's trace and span; flagpole's span joins that trace
//! as the caller's child. A header that does not parse is ignored (a new trace starts), as the W3C
//! recommendation says, so a malformed header never fails a request.

/// A trace id: 16 bytes, never all zero.
pub type TraceId = [u8; 16];
/// A span id: 8 bytes, never all zero.
pub type SpanId = [u8; 8];

/// The `traceparent` header's name.
pub const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header's name.
pub const TRACESTATE: &str = "tracestate";
/// The longest `tracestate` kept (the W3C limit is 32 members of at most 256 bytes, but 512 bytes is
/// what the recommendation asks implementations to pass on at least); a longer one is dropped.
pub const MAX_TRACESTATE_BYTES: usize = 512;

/// The caller's span, from `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    /// The trace the request belongs to.
    pub trace_id: TraceId,
    /// The caller's span.
    pub span_id: SpanId,
    /// The caller's `sampled` flag.
    pub sampled: bool,
}

/// Parses a `traceparent` value: `00-<32 hex>-<16 hex>-<2 hex>`; a later version may append fields
/// after a further `-`. `None` when it does not parse, is version `ff`, or has an all-zero id.
pub fn parse_traceparent(value: &[u8]) -> Option<Parent> {
    if value.len() < 55 {
        return None;
    }
    let version = hex_byte(&value[0..2])?;
    if version == 0xff || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    // Version 00 is exactly 55 bytes; a later version may carry more after a dash.
    if (version == 0 && value.len() != 55) || (value.len() > 55 && value[55] != b'-') {
        return None;
    }
    let mut trace_id = [0u8; 16];
    for (i, byte) in trace_id.iter_mut().enumerate() {
        *byte = hex_byte(&value[3 + 2 * i..5 + 2 * i])?;
    }
    let mut span_id = [0u8; 8];
    for (i, byte) in span_id.iter_mut().enumerate() {
        *byte = hex_byte(&value[36 + 2 * i..38 + 2 * i])?;
    }
    let flags = hex_byte(&value[53..55])?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// Lowercase hex only, as the W3C format requires.
fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

/// A new, non-zero trace id.
pub fn new_trace_id() -> TraceId {
    loop {
        let id = fastrand::u128(..).to_be_bytes();
        if id != [0; 16] {
            return id;
        }
    }
}

/// A new, non-zero span id.
pub fn new_span_id() -> SpanId {
    loop {
        let id = fastrand::u64(..).to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

/// Which spans are recorded (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    /// `always_on`.
    AlwaysOn,
    /// `always_off`.
    AlwaysOff,
    /// `traceidratio`: this fraction of traces, decided from the trace id alone (so every service that
    /// samples by ratio keeps the same traces).
    Ratio(f64),
    /// `parentbased_*`: follow the caller's `sampled` flag when there is a caller; else the inner sampler.
    ParentBased(Root),
}

/// The sampler of a `parentbased_*` sampler for requests without a caller's span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Root {
    /// `parentbased_always_on` (the default).
    AlwaysOn,
    /// `parentbased_always_off`.
    AlwaysOff,
    /// `parentbased_traceidratio`.
    Ratio(f64),
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::ParentBased(Root::AlwaysOn)
    }
}

impl Sampler {
    /// Reads `OTEL_TRACES_SAMPLER` and its argument; `Err` names what is wrong.
    pub fn from_env(name: Option<&str>, arg: Option<&str>) -> Result<Sampler, String> {
        let ratio = || -> Result<f64, String> {
            match arg.map(str::trim).filter(|a| !a.is_empty()) {
                None => Ok(1.0),
                Some(text) => match text.parse::<f64>() {
                    Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                    _ => Err(format!(
                        "OTEL_TRACES_SAMPLER_ARG {text:?} is not a ratio between 0 and 1"
                    )),
                },
            }
        };
        Ok(
            match name.map(|n| n.trim().to_ascii_lowercase()).as_deref() {
                None | Some("") | Some("parentbased_always_on") => Sampler::default(),
                Some("always_on") => Sampler::AlwaysOn,
                Some("always_off") => Sampler::AlwaysOff,
                Some("traceidratio") => Sampler::Ratio(ratio()?),
                Some("parentbased_always_off") => Sampler::ParentBased(Root::AlwaysOff),
                Some("parentbased_traceidratio") => Sampler::ParentBased(Root::Ratio(ratio()?)),
                Some(other) => {
                    return Err(format!(
                        "OTEL_TRACES_SAMPLER {other:?} is not one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio"
                    ));
                }
            },
        )
    }

    /// Whether a span of `trace_id` under `parent` is recorded.
    pub fn sample(self, trace_id: &TraceId, parent: Option<&Parent>) -> bool {
        match self {
            Sampler::AlwaysOn => true,
            Sampler::AlwaysOff => false,
            Sampler::Ratio(ratio) => by_ratio(trace_id, ratio),
            Sampler::ParentBased(root) => match parent {
                Some(parent) => parent.sampled,
                None => match root {
                    Root::AlwaysOn => true,
                    Root::AlwaysOff => false,
                    Root::Ratio(ratio) => by_ratio(trace_id, ratio),
                },
            },
        }
    }
}

/// The trace-id ratio rule: the id's last 8 bytes (the random part of a W3C id), read as a number, below
/// `ratio` of the range.
fn by_ratio(trace_id: &TraceId, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    let value = u64::from_be_bytes(low) >> 1;
    // 2^63 as a float is exact; the product is at most 2^63.
    (value as f64) < ratio * 9_223_372_036_854_775_808.0
}

/// Lowercase hex of an id, for logs and tests.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_w3c_traceparent_parses_and_anything_else_is_ignored() {
        let parent = parse_traceparent(GOOD.as_bytes()).expect("parses");
        assert_eq!(hex(&parent.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&parent.span_id), "00f067aa0ba902b7");
        assert!(parent.sampled);
        let unsampled = GOOD.replace("-01", "-00");
        assert!(!parse_traceparent(unsampled.as_bytes()).unwrap().sampled);
        // A later version may add fields; version 00 may not.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert!(parse_traceparent(later.as_bytes()).is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(parse_traceparent(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn samplers_follow_their_names_and_the_parent() {
        let parent = parse_traceparent(GOOD.as_bytes()).unwrap();
        let unsampled = Parent {
            sampled: false,
            ..parent
        };
        let id = new_trace_id();
        let default = Sampler::from_env(None, None).unwrap();
        assert!(default.sample(&id, None));
        assert!(default.sample(&id, Some(&parent)));
        assert!(!default.sample(&id, Some(&unsampled)));
        let on = Sampler::from_env(Some("always_on"), None).unwrap();
        assert!(on.sample(&id, Some(&unsampled)));
        let off = Sampler::from_env(Some("parentbased_always_off"), None).unwrap();
        assert!(!off.sample(&id, None));
        assert!(off.sample(&id, Some(&parent)));
        assert!(Sampler::from_env(Some("traceidratio"), Some("2")).is_err());
        assert!(Sampler::from_env(Some("jaeger_remote"), None).is_err());
    }

    #[test]
    fn a_ratio_keeps_about_that_share_of_traces_by_id() {
        let sampler = Sampler::from_env(Some("traceidratio"), Some("0.1")).unwrap();
        let kept = (0..20_000)
            .filter(|_| sampler.sample(&new_trace_id(), None))
            .count();
        assert!((1_600..2_400).contains(&kept), "{kept} of 20000");
        // The decision is the id's: the same id always gets the same answer.
        let id = new_trace_id();
        assert_eq!(sampler.sample(&id, None), sampler.sample(&id, None));
        let none = Sampler::from_env(Some("traceidratio"), Some("0")).unwrap();
        assert!(!(0..1000).any(|_| none.sample(&new_trace_id(), None)));
    }
}
