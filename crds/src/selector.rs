//! The schema of a pool's label selectors: Kubernetes' LabelSelector, with the limits and
//! rules the API server applies to its own kinds but not to custom resources. Without
//! them a misspelt operator (`in`) or a value on `Exists` is stored, and the pool then
//! quietly selects nothing.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of 1 to 63 letters,
/// digits, `-`, `_` or `.` that starts and ends with a letter or digit.
const KEY: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";
/// A label value: empty, or up to 63 of the name's characters.
const VALUE: &str = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$";

const KEY_MESSAGE: &str = "label keys are a name of up to 63 letters, digits, '-', '_' or '.' that starts and ends with a letter or digit, optionally after a DNS subdomain and '/' (example: topology.kubernetes.io/zone)";
const VALUE_MESSAGE: &str = "label values are empty or up to 63 letters, digits, '-', '_' or '.' that start and end with a letter or digit";

pub fn label_selector(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "A label selector: every matchLabels pair and every matchExpressions entry must hold; empty selects everything.",
        "type": "object",
        "properties": {
            "matchLabels": {
                "type": "object",
                "maxProperties": 32,
                "additionalProperties": {"type": "string", "maxLength": 63},
                "x-kubernetes-validations": [
                    {"rule": format!("self.all(k, size(k) <= 317 && k.matches('{KEY}'))"), "message": format!("matchLabels: {KEY_MESSAGE}")},
                    {"rule": format!("self.all(k, self[k].matches('{VALUE}'))"), "message": format!("matchLabels: {VALUE_MESSAGE}")},
                ],
            },
            "matchExpressions": {
                "type": "array",
                "maxItems": 32,
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {
                            "type": "string",
                            "maxLength": 317,
                            "x-kubernetes-validations": [
                                {"rule": format!("self.matches('{KEY}')"), "message": format!("matchExpressions[].key: {KEY_MESSAGE}")},
                            ],
                        },
                        "operator": {
                            "description": "In, NotIn, Exists or DoesNotExist.",
                            "type": "string",
                            "enum": ["In", "NotIn", "Exists", "DoesNotExist"],
                        },
                        "values": {
                            "type": "array",
                            "maxItems": 64,
                            "items": {"type": "string", "maxLength": 63},
                            "x-kubernetes-validations": [
                                {"rule": format!("self.all(v, v.matches('{VALUE}'))"), "message": format!("matchExpressions[].values: {VALUE_MESSAGE}")},
                            ],
                        },
                    },
                    "x-kubernetes-validations": [
                        {
                            "rule": "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
                            "message": "matchExpressions: In and NotIn need at least one value; Exists and DoesNotExist take none",
                        },
                    ],
                },
            },
        },
    })
}
