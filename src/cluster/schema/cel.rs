//! `x-kubernetes-validations` CEL rules, evaluated with kube's `cel` feature
//! (the kube-cel crate) one schema node at a time, so each failure carries the
//! node's type and path as the apiserver reports them.

use std::{cell::RefCell, collections::BTreeMap, rc::Rc};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::core::cel::{CompiledSchema, ErrorKind, ValidationError, Validator, cel, compile_schema};
use serde_json::Value;

use super::{
    errors::{FieldError, FieldErrorKind},
    structural::{additional_schema, items_schema},
};

/// Rule trees kept per thread for callers that pass a bare schema.
const RULE_TREE_CACHE_LIMIT: usize = 32;

/// A schema's root address, a copy to confirm it is unchanged, and its rules.
type CachedRuleTree = (usize, JSONSchemaProps, Rc<RuleTree>);

thread_local! {
    static VALIDATOR: Validator = Validator::new();
    static RULE_TREES: RefCell<Vec<CachedRuleTree>> = const { RefCell::new(Vec::new()) };
}

/// The CEL rules of a schema compiled once, in the schema's shape; subtrees
/// without rules are left out so validation skips them.
#[derive(Debug, Default)]
pub(crate) struct RuleTree {
    /// This node's rules (descendants' rules stripped), or why they could not be prepared.
    node: Option<Result<CompiledSchema, String>>,
    properties: BTreeMap<String, RuleTree>,
    items: Option<Box<RuleTree>>,
    additional: Option<Box<RuleTree>>,
}

impl RuleTree {
    /// Compiles every `x-kubernetes-validations` rule under `schema`.
    pub(crate) fn compile(schema: &JSONSchemaProps) -> Self {
        let has_rules = schema
            .x_kubernetes_validations
            .as_ref()
            .is_some_and(|r| !r.is_empty());
        let node = has_rules.then(|| {
            node_schema_json(schema)
                .map(|json| compile_schema(&json))
                .map_err(|e| e.to_string())
        });
        let properties = schema
            .properties
            .iter()
            .flatten()
            .map(|(k, child)| (k.clone(), Self::compile(child)))
            .filter(|(_, tree)| !tree.is_empty())
            .collect();
        let boxed = |child: Option<&JSONSchemaProps>| {
            child
                .map(Self::compile)
                .filter(|tree| !tree.is_empty())
                .map(Box::new)
        };
        Self {
            node,
            properties,
            items: boxed(items_schema(schema)),
            additional: boxed(additional_schema(schema)),
        }
    }

    /// Whether no rule exists in this subtree.
    pub(crate) fn is_empty(&self) -> bool {
        self.node.is_none()
            && self.properties.is_empty()
            && self.items.is_none()
            && self.additional.is_none()
    }

    /// The rules under a declared property.
    pub(crate) fn property(&self, key: &str) -> Option<&RuleTree> {
        self.properties.get(key)
    }

    /// The rules of list items.
    pub(crate) fn items(&self) -> Option<&RuleTree> {
        self.items.as_deref()
    }

    /// The rules of map values.
    pub(crate) fn additional(&self) -> Option<&RuleTree> {
        self.additional.as_deref()
    }
}

/// The compiled rules of `schema`, reused while the caller keeps passing the
/// same (unchanged) schema value.
pub(crate) fn rule_tree_for(schema: &JSONSchemaProps) -> Rc<RuleTree> {
    let address = std::ptr::from_ref(schema) as usize;
    RULE_TREES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((_, _, tree)) = cache
            .iter()
            .find(|(addr, copy, _)| *addr == address && copy == schema)
        {
            return Rc::clone(tree);
        }
        // A caller that clones its schema per request still finds it by content.
        if let Some(entry) = cache.iter_mut().find(|(_, copy, _)| copy == schema) {
            entry.0 = address;
            return Rc::clone(&entry.2);
        }
        cache.retain(|(addr, _, _)| *addr != address);
        if cache.len() >= RULE_TREE_CACHE_LIMIT {
            cache.remove(0);
        }
        let tree = Rc::new(RuleTree::compile(schema));
        cache.push((address, schema.clone(), Rc::clone(&tree)));
        tree
    })
}

/// The schema type as the apiserver prints it as the "value" of a CEL failure.
pub(crate) fn schema_type(schema: &JSONSchemaProps) -> &str {
    schema.type_.as_deref().unwrap_or("")
}

/// A copy of `schema` as JSON for kube-cel holding only this node's rules;
/// descendants are visited by our own walk. Sub-schemas that do not change how
/// kube-cel converts values (formats, maps, embedded resources) are left out,
/// since kube-cel otherwise re-converts every descendant on its own walk.
fn node_schema_json(schema: &JSONSchemaProps) -> Result<Value, serde_json::Error> {
    let mut node = schema.clone();
    // Defaults were applied before validation; kube-cel need not re-apply them.
    node.default = None;
    trim_children(&mut node);
    serde_json::to_value(&node)
}

/// Whether kube-cel converts values under `schema` differently from plain JSON.
fn shapes_conversion(schema: &JSONSchemaProps) -> bool {
    schema.format.is_some()
        || schema.x_kubernetes_embedded_resource == Some(true)
        || schema.additional_properties.is_some()
        || schema
            .properties
            .iter()
            .flatten()
            .any(|(_, child)| shapes_conversion(child))
        || items_schema(schema).is_some_and(shapes_conversion)
}

fn trim_children(schema: &mut JSONSchemaProps) {
    if let Some(properties) = schema.properties.as_mut() {
        properties.retain(|_, child| shapes_conversion(child));
        properties.values_mut().for_each(strip_and_trim);
    }
    if items_schema(schema).is_some_and(shapes_conversion) {
        match schema.items.as_mut() {
            Some(JSONSchemaPropsOrArray::Schema(item)) => strip_and_trim(item),
            Some(JSONSchemaPropsOrArray::Schemas(items)) => {
                items.iter_mut().for_each(strip_and_trim)
            }
            None => {}
        }
    } else {
        schema.items = None;
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = schema.additional_properties.as_mut() {
        strip_and_trim(values);
    }
    // Branches carry no conversion hints and their rules are not evaluated.
    schema.all_of = None;
    schema.any_of = None;
    schema.one_of = None;
    schema.not = None;
}

fn strip_and_trim(schema: &mut JSONSchemaProps) {
    schema.x_kubernetes_validations = None;
    schema.default = None;
    trim_children(schema);
}

/// Joins the node path with a rule's relative `fieldPath` (`.a.b` or `a.b`).
fn join_field_path(path: &str, rule_path: &str) -> String {
    let rel = rule_path.strip_prefix('.').unwrap_or(rule_path);
    match (path.is_empty(), rel.is_empty()) {
        (_, true) => path.to_string(),
        (true, false) => rel.to_string(),
        (false, false) if rel.starts_with('[') => format!("{path}{rel}"),
        (false, false) => format!("{path}.{rel}"),
    }
}

/// Evaluates the rules declared on this node (not its descendants) against
/// `value`, with `old` bound to `oldSelf` for transition rules.
pub(crate) fn evaluate_node_rules(
    schema: &JSONSchemaProps,
    tree: &RuleTree,
    value: &Value,
    old: Option<&Value>,
    path: &str,
) -> Vec<FieldError> {
    let Some(prepared) = tree.node.as_ref() else {
        return Vec::new();
    };
    let rules = schema
        .x_kubernetes_validations
        .as_deref()
        .unwrap_or_default();
    let type_value = Some(Value::String(schema_type(schema).to_string()));
    let compiled = match prepared {
        Ok(compiled) => compiled,
        Err(e) => {
            return vec![FieldError::new(
                path,
                FieldErrorKind::Invalid,
                type_value,
                format!("rule compile error: schema cannot be read: {e}"),
            )];
        }
    };
    // The cel crate panics on some values (e.g. `-self` of the smallest int); a
    // user's object must not take the request down.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        VALIDATOR.with(|v| v.validate_compiled(compiled, value, old))
    }));
    let failures: Vec<ValidationError> = match outcome {
        Ok(Ok(())) => return Vec::new(),
        Ok(Err(errors)) => errors.into_vec(),
        Err(_) => {
            let listed: Vec<&str> = rules.iter().map(|r| r.rule.as_str()).collect();
            return vec![FieldError::new(
                path,
                FieldErrorKind::Invalid,
                type_value,
                format!(
                    "rule evaluation error: the CEL engine crashed evaluating the rules {listed:?} on this value"
                ),
            )];
        }
    };
    failures
        .into_iter()
        .map(|failure| {
            let field = join_field_path(path, &failure.field_path);
            match failure.kind {
                ErrorKind::ValidationFailure => FieldError::new(
                    field,
                    FieldErrorKind::from_cel_reason(failure.reason.as_deref()),
                    type_value.clone(),
                    failure.message,
                ),
                ErrorKind::CompilationFailure | ErrorKind::InvalidRule => FieldError::new(
                    field,
                    FieldErrorKind::Invalid,
                    type_value.clone(),
                    format!("rule compile error: {}", failure.message),
                ),
                _ => FieldError::new(
                    field,
                    FieldErrorKind::Invalid,
                    type_value.clone(),
                    failure.message,
                ),
            }
        })
        .collect()
}

/// Checks that a rule (or a `messageExpression`) parses; the error text is
/// what the CEL parser says.
pub(crate) fn compile_check(expression: &str) -> Result<(), String> {
    let parsed = std::panic::catch_unwind(|| cel::Program::compile(expression).map(|_| ()));
    match parsed {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the CEL parser failed on this expression".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> JSONSchemaProps {
        serde_json::from_value(v).expect("test schema is valid")
    }

    fn eval(
        s: &JSONSchemaProps,
        value: &Value,
        old: Option<&Value>,
        path: &str,
    ) -> Vec<FieldError> {
        evaluate_node_rules(s, &RuleTree::compile(s), value, old, path)
    }

    #[test]
    fn rule_trees_leave_out_subtrees_without_rules() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "plain": {"type": "object", "properties": {"a": {"type": "string"}}},
                "ruled": {"type": "array", "items": {"type": "integer", "x-kubernetes-validations": [{"rule": "self > 0"}]}}
            }
        }));
        let tree = RuleTree::compile(&s);
        assert!(tree.property("plain").is_none());
        assert!(tree.property("ruled").and_then(RuleTree::items).is_some());
        assert!(RuleTree::compile(&schema(json!({"type": "string"}))).is_empty());
        assert!(
            Rc::ptr_eq(&rule_tree_for(&s), &rule_tree_for(&s)),
            "same schema, same compiled rules"
        );
        let copy = s.clone();
        assert!(
            Rc::ptr_eq(&rule_tree_for(&s), &rule_tree_for(&copy)),
            "a clone is found by content"
        );
    }

    #[test]
    fn failing_rule_reports_node_type_message_and_path() {
        let s = schema(json!({
            "type": "object",
            "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
            "x-kubernetes-validations": [{"rule": "self.min <= self.max", "message": "min must not exceed max"}]
        }));
        let errors = eval(&s, &json!({"min": 5, "max": 1}), None, "spec.range");
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "spec.range: Invalid value: \"object\": min must not exceed max"
        );
        assert!(eval(&s, &json!({"min": 1, "max": 5}), None, "spec.range").is_empty());
    }

    #[test]
    fn only_this_nodes_rules_are_evaluated() {
        let s = schema(json!({
            "type": "object",
            "properties": {"a": {"type": "integer", "x-kubernetes-validations": [{"rule": "self > 100"}]}},
            "x-kubernetes-validations": [{"rule": "has(self.a)"}]
        }));
        assert!(eval(&s, &json!({"a": 1}), None, "spec").is_empty());
    }

    #[test]
    fn field_path_reason_and_default_message() {
        let s = schema(json!({
            "type": "object",
            "properties": {"replicas": {"type": "integer"}},
            "x-kubernetes-validations": [
                {"rule": "self.replicas < 10", "fieldPath": ".replicas", "reason": "FieldValueForbidden"},
                {"rule": "self.replicas > 0"}
            ]
        }));
        let errors = eval(&s, &json!({"replicas": 20}), None, "spec");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "spec.replicas");
        assert_eq!(errors[0].kind, FieldErrorKind::Forbidden);
        let errors = eval(&s, &json!({"replicas": 0}), None, "spec");
        assert_eq!(errors[0].message, "failed rule: self.replicas > 0");
    }

    #[test]
    fn transition_rules_see_old_self_only_on_update() {
        let s = schema(json!({
            "type": "string",
            "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "task is immutable"}]
        }));
        assert!(eval(&s, &json!("regression"), None, "spec.task").is_empty());
        let errors = eval(
            &s,
            &json!("regression"),
            Some(&json!("classification")),
            "spec.task",
        );
        assert_eq!(
            errors[0].to_string(),
            "spec.task: Invalid value: \"string\": task is immutable"
        );
    }

    #[test]
    fn message_expression_is_used() {
        let s = schema(json!({
            "type": "integer",
            "x-kubernetes-validations": [{"rule": "self <= 5", "messageExpression": "'got ' + string(self) + ', want at most 5'"}]
        }));
        let errors = eval(&s, &json!(7), None, "spec.n");
        assert_eq!(errors[0].message, "got 7, want at most 5");
    }

    #[test]
    fn a_rule_that_does_not_compile_is_an_error_not_a_panic() {
        let s = schema(json!({
            "type": "object",
            "x-kubernetes-validations": [{"rule": "self.a >>> ("}]
        }));
        let errors = eval(&s, &json!({}), None, "spec");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.starts_with("rule compile error:"),
            "{}",
            errors[0].message
        );
        assert!(compile_check("self.a >>> (").is_err());
        assert!(compile_check("self.a > 1").is_ok());
    }

    #[test]
    fn a_value_that_crashes_the_cel_engine_is_rejected_not_fatal() {
        let s = schema(json!({
            "type": "integer",
            "x-kubernetes-validations": [{"rule": "-self < 0"}]
        }));
        let errors = eval(&s, &json!(i64::MIN), None, "spec.n");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "spec.n");
        assert!(
            errors[0].message.contains("CEL engine crashed"),
            "{}",
            errors[0].message
        );
        assert!(eval(&s, &json!(5), None, "spec.n").is_empty());
    }

    #[test]
    fn rules_see_formatted_fields_as_timestamps_and_escaped_names() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "window": {"type": "object", "properties": {
                    "start": {"type": "string", "format": "date-time"},
                    "max-age": {"type": "integer"},
                    "plain": {"type": "object", "properties": {"n": {"type": "integer"}}}
                }},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}
            },
            "x-kubernetes-validations": [
                {"rule": "self.window.start < timestamp('2030-01-01T00:00:00Z')", "message": "start too late"},
                {"rule": "self.window.max__dash__age > 0", "message": "max-age must be positive"},
                {"rule": "!('app.kubernetes.io/name' in self.labels) || self.labels['app.kubernetes.io/name'] != ''", "message": "empty app name"},
                {"rule": "self.window.plain.n >= 0", "message": "n negative"}
            ]
        }));
        let good = json!({"window": {"start": "2026-01-01T00:00:00Z", "max-age": 3, "plain": {"n": 1}},
                          "labels": {"app.kubernetes.io/name": "wine"}});
        assert!(
            eval(&s, &good, None, "spec").is_empty(),
            "{:?}",
            eval(&s, &good, None, "spec")
        );
        let bad = json!({"window": {"start": "2031-01-01T00:00:00Z", "max-age": 0, "plain": {"n": -1}},
                         "labels": {"app.kubernetes.io/name": ""}});
        let messages: Vec<String> = eval(&s, &bad, None, "spec")
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(
            messages,
            vec![
                "start too late",
                "max-age must be positive",
                "empty app name",
                "n negative"
            ]
        );
    }

    #[test]
    fn field_paths_join_relative_and_indexed_forms() {
        assert_eq!(join_field_path("spec", ".a.b"), "spec.a.b");
        assert_eq!(join_field_path("", ".a"), "a");
        assert_eq!(join_field_path("spec", ""), "spec");
        assert_eq!(join_field_path("spec", "['x']"), "spec['x']");
    }
}
