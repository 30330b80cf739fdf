//! The OpenAPI document (generated from the handlers by `utoipa`, see `http::openapi`) matches
//! the routes the server has and the README's API table.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::{spawn, Backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_every_route_and_only_real_ones() {
    let app = spawn(Backend::Sqlite).await;
    let doc: Value = app.get("/api/v1/openapi.json", None).await.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    // Served as generated, from the library's own serialisation.
    assert_eq!(doc, serde_json::from_str::<Value>(qetta::http::openapi::document()).unwrap());
    // Every reference resolves (a schema-driven client refuses the document otherwise).
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x.as_str()) {
                        ("$ref", Some(r)) => out.push(r),
                        _ => refs(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(&doc, &mut found);
    for r in found {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("only local references: {r}"));
        assert!(doc.pointer(pointer).is_some(), "unresolvable reference {r}");
    }
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            documented.insert((method.to_uppercase(), path.clone()));
            // Every operation says what it answers: a success (or `default`) and, on the API, the
            // error responses the router's layers add (timeout, rate limit).
            let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path}: responses"));
            assert!(responses.keys().any(|s| s.starts_with('2') || s.starts_with('3') || s == "default"), "{method} {path}: a success response");
            if path.starts_with("/api/v1/") {
                for status in ["408", "429"] {
                    assert!(responses.contains_key(status), "{method} {path}: {status}");
                }
            }
            assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{method} {path}: a summary");
            // The route exists: no 404 "no such route" and no 405 for the documented method.
            let mut concrete = path.clone();
            while let (Some(a), Some(b)) = (concrete.find('{'), concrete.find('}')) {
                concrete.replace_range(a..=b, "x");
            }
            let url = app.url(&concrete);
            let r = app.client.request(method.to_uppercase().parse().unwrap(), url).send().await.unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            assert_ne!(status, 405, "{method} {path}");
            assert!(!(status == 404 && body.contains("No such route")), "{method} {path} is not a route");
        }
    }
    // Every API row of the README is documented, and nothing else.
    let readme = include_str!("../../../../README.md");
    let mut listed = BTreeSet::new();
    for line in readme.lines() {
        let Some(rest) = line.strip_prefix("| `") else { continue };
        let Some((route, _)) = rest.split_once('`') else { continue };
        let Some((method, path)) = route.split_once(' ') else { continue };
        let methods: Vec<&str> = match method {
            // The proxy takes every method.
            "ANY" => vec!["GET", "POST", "PUT", "PATCH", "DELETE"],
            "GET" | "POST" | "PATCH" | "DELETE" => vec![method],
            // A row that documents two methods: `GET|POST /path`.
            m if m.contains('|') => m.split('|').collect(),
            _ => vec![],
        };
        if path.starts_with("/api/") || ["/health", "/ready", "/metrics"].contains(&path) {
            for m in methods {
                listed.insert((m.to_string(), path.to_string()));
            }
        }
    }
    assert_eq!(listed, documented, "README API table vs OpenAPI document");
}
