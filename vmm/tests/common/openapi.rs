//! Checks JSON responses against `resources/openapi.yaml` (OpenAPI 3.1,
//! JSON Schema 2020-12), shared by the API test binaries.

use std::path::Path;

use serde_json::Value;

pub struct OpenApi {
    doc: Value,
}

impl OpenApi {
    pub fn load() -> OpenApi {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../resources/openapi.yaml");
        let text = std::fs::read_to_string(&p).expect("resources/openapi.yaml");
        let doc: Value = serde_norway::from_str(&text).expect("OpenAPI YAML");
        assert_eq!(doc["openapi"].as_str().map(|s| &s[..2]), Some("3."));
        OpenApi { doc }
    }

    fn schema(&self, path: &str, method: &str, status: &str) -> Value {
        let op = &self.doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} not documented");
        let mut resp = op["responses"][status].clone();
        if let Some(r) = resp.get("$ref").and_then(|r| r.as_str()) {
            let name = r.rsplit('/').next().unwrap();
            resp = self.doc["components"]["responses"][name].clone();
        }
        let content = resp["content"].as_object().expect("content");
        let (_, media) = content.iter().next().expect("media type");
        media["schema"].clone()
    }

    /// Validates `value` against the schema `components/schemas/NAME`.
    pub fn check_component(&self, name: &str, value: &Value) {
        let schema = serde_json::json!({ "$ref": format!("#/components/schemas/{name}") });
        self.validate(schema, value, name);
    }

    /// Validates `value` against the response schema of (path, method,
    /// status), resolving `$ref`s in the document (JSON Schema 2020-12, as
    /// OpenAPI 3.1 uses).
    pub fn check(&self, path: &str, method: &str, status: &str, value: &Value) {
        let schema = self.schema(path, method, status);
        self.validate(schema, value, &format!("{method} {path} {status}"));
    }

    fn validate(&self, schema: Value, value: &Value, what: &str) {
        let mut root = serde_json::Map::new();
        root.insert("components".into(), self.doc["components"].clone());
        root.insert("allOf".into(), Value::Array(vec![schema]));
        let root = Value::Object(root);
        let v = jsonschema::draft202012::new(&root).expect("schema compiles");
        let errors: Vec<String> = v
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "{what} does not match the OpenAPI schema:\n{}",
            errors.join("\n")
        );
    }
}
