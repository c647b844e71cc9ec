//! The generated flag document of the `load/N` benchmark, shared by `benches/engine.rs` and
//! `examples/load_file.rs` (included with `#[path]`), so that profiling the loader uses exactly the
//! benchmark's input.

/// A tiny deterministic generator (SplitMix64), so that the generated documents are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// `n` flags: 60 % static, 25 % simple targeting, 15 % complex targeting.
pub fn generated_text(n: usize, seed: u64) -> String {
    let mut rng = Rng(seed);
    let mut out = String::with_capacity(n * 300);
    out.push_str(r#"{"metadata": {"flagSetId": "bench", "version": "1"}, "flags": {"#);
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        let roll = rng.next() % 100;
        let value = rng.next() % 1000;
        out.push_str(&format!(r#""flag-{i:05}": {{"state": "ENABLED", "variants": {{"on": true, "off": false}}, "defaultVariant": "off""#));
        if roll >= 85 {
            out.push_str(&format!(
                r#", "targeting": {{"if": [{{"and": [{{"in": [{{"var": "country"}}, ["de", "fr", "c{value}"]]}}, {{">=": [{{"var": "age"}}, {value}]}}]}}, {{"fractional": [["on", 50], ["off", 50]]}}, null]}}"#
            ));
        } else if roll >= 60 {
            out.push_str(&format!(r#", "targeting": {{"if": [{{"==": [{{"var": "email"}}, "user{value}@example.com"]}}, "on", null]}}"#));
        }
        if value.is_multiple_of(4) {
            out.push_str(&format!(r#", "metadata": {{"owner": "team-{value}"}}"#));
        }
        out.push('}');
    }
    out.push_str("}}");
    out
}
