//! `$evaluators` inlining: every `{"$ref": "<name>"}` of a defined evaluator replaced by the evaluator,
//! with the expansion measured before it is copied, so an exponential document is refused rather than
//! built (`docs/limits.md`).

use serde_json::{Map, Value};

use super::error::LoadError;
use super::limits::{MAX_INLINED_NODES, MAX_NESTING_DEPTH};

/// Replaces every `{"$ref": "<evaluator>"}` by the evaluator (itself with references resolved), within
/// [`MAX_INLINED_NODES`]. The stack holds the evaluators being expanded, so a cycle leaves the inner
/// reference in place.
pub(super) struct Inliner<'a> {
    pub(super) evaluators: &'a Map<String, Value>,
    pub(super) stack: Vec<&'a str>,
    /// JSON values still allowed to be added.
    pub(super) budget: usize,
    /// Each evaluator's size with its references expanded (saturating), computed once; a reference back
    /// into an evaluator being measured counts as the two values it stays.
    pub(super) expanded: std::collections::HashMap<&'a str, usize>,
}

impl<'a> Inliner<'a> {
    pub(super) fn new(evaluators: &'a Map<String, Value>) -> Self {
        Inliner {
            evaluators,
            stack: Vec::new(),
            budget: MAX_INLINED_NODES,
            expanded: std::collections::HashMap::new(),
        }
    }

    pub(super) fn inline(&mut self, value: &mut Value, depth: usize) -> Result<(), LoadError> {
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
    pub(super) fn reference(&self, map: &Map<String, Value>) -> Option<(&'a str, &'a Value)> {
        if map.len() != 1 {
            return None;
        }
        let Some(Value::String(name)) = map.get("$ref") else {
            return None;
        };
        let (name, evaluator) = self.evaluators.get_key_value(name.as_str())?;
        (!self.stack.contains(&name.as_str())).then_some((name.as_str(), evaluator))
    }

    pub(super) fn expanded_size(&mut self, name: &'a str, evaluator: &'a Value) -> usize {
        if let Some(&size) = self.expanded.get(name) {
            return size;
        }
        let mut measuring = vec![name];
        let size = self.measure(evaluator, &mut measuring);
        self.expanded.insert(name, size);
        size
    }

    pub(super) fn measure(&mut self, value: &'a Value, measuring: &mut Vec<&'a str>) -> usize {
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
pub(super) fn count_nodes(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(count_nodes).sum::<usize>(),
        Value::Array(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        _ => 1,
    }
}
