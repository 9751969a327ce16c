//! The offline API reference at `/docs`: plain HTML rendered once at start-up from the OpenAPI
//! document. No script, no font, no stylesheet from elsewhere, so it works air-gapped.

use serde_json::Value;

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Escapes prose and shows its `backticked` words as code.
fn prose(text: &str) -> String {
    esc(text)
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{part}</code>")
            } else {
                part.to_owned()
            }
        })
        .collect()
}

/// Names a schema briefly: a `$ref` becomes a link to its component.
fn schema_name(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{0}\">{0}</a>", esc(name));
    }
    if let Some(items) = schema.get("items") {
        return format!("array of {}", schema_name(items));
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema.get(combinator).and_then(Value::as_array) {
            return options
                .iter()
                .map(schema_name)
                .collect::<Vec<_>>()
                .join(" | ");
        }
    }
    match schema.get("type") {
        Some(Value::String(t)) => esc(t),
        Some(Value::Array(ts)) => esc(&ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | ")),
        _ => "any".into(),
    }
}

/// Renders the reference page for an OpenAPI document.
pub(crate) fn render(openapi: &str) -> String {
    let doc: Value = serde_json::from_str(openapi).expect("the OpenAPI document is JSON");
    let mut html = String::new();
    let title = doc["info"]["title"].as_str().unwrap_or("API");
    let version = doc["info"]["version"].as_str().unwrap_or("");
    html.push_str(&format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} API reference</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>\
         body{{font-family:system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem;color:#1b1f23;line-height:1.45}}\
         h2{{border-bottom:1px solid #d0d7de;padding-bottom:.3rem;margin-top:2.5rem}}\
         .op{{border:1px solid #d0d7de;border-radius:6px;margin:1rem 0;padding:.6rem 1rem}}\
         .m{{display:inline-block;min-width:4.5rem;font-weight:700;font-family:monospace}}\
         .get{{color:#0969da}}.post{{color:#1a7f37}}.delete{{color:#cf222e}}.put,.patch{{color:#9a6700}}\
         code,pre{{font-family:ui-monospace,monospace;font-size:.9em}}pre{{background:#f6f8fa;padding:.6rem;overflow:auto}}\
         table{{border-collapse:collapse;width:100%}}td,th{{border-top:1px solid #eaeef2;padding:.25rem .5rem;text-align:left;vertical-align:top}}\
         </style></head><body><h1>{t} <small>{v}</small></h1><p>{d}</p>\
         <p>Machine-readable: <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>. \
         Authenticate with <code>Authorization: Bearer st_…</code>. Errors are <code>application/problem+json</code>.</p>",
        t = esc(title),
        v = esc(version),
        d = esc(doc["info"]["description"].as_str().unwrap_or("")),
    ));
    html.push_str("<h2>Endpoints</h2>");
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            let Some(ops) = item.as_object() else {
                continue;
            };
            for (method, op) in ops {
                render_operation(&mut html, path, method, op);
            }
        }
    }
    html.push_str("<h2>Schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            html.push_str(&format!(
                "<div class=\"op\" id=\"schema-{0}\"><h3>{0}</h3>",
                esc(name)
            ));
            if let Some(desc) = schema["description"].as_str() {
                html.push_str(&format!("<p>{}</p>", esc(desc)));
            }
            if let Some(props) = schema["properties"].as_object() {
                let required: Vec<&str> = schema["required"]
                    .as_array()
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                html.push_str("<table><tr><th>field</th><th>type</th><th>description</th></tr>");
                for (prop, s) in props {
                    html.push_str(&format!(
                        "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(prop),
                        if required.contains(&prop.as_str()) {
                            " *"
                        } else {
                            ""
                        },
                        schema_name(s),
                        prose(s["description"].as_str().unwrap_or(""))
                    ));
                }
                html.push_str("</table>");
            } else if let Some(values) = schema["enum"].as_array() {
                let values: Vec<String> = values
                    .iter()
                    .map(|v| format!("<code>{}</code>", esc(&v.to_string())))
                    .collect();
                html.push_str(&format!("<p>One of {}</p>", values.join(", ")));
            }
            html.push_str("</div>");
        }
    }
    html.push_str("</body></html>");
    html
}

fn render_operation(html: &mut String, path: &str, method: &str, op: &Value) {
    let summary = op["summary"].as_str().unwrap_or("");
    html.push_str(&format!(
        "<div class=\"op\"><div><span class=\"m {m}\">{M}</span> <code>{p}</code></div><p>{s}</p>",
        m = esc(method),
        M = esc(&method.to_uppercase()),
        p = esc(path),
        s = prose(summary),
    ));
    if let Some(desc) = op["description"].as_str().filter(|d| *d != summary) {
        html.push_str(&format!("<p>{}</p>", prose(desc)));
    }
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        html.push_str(
            "<table><tr><th>parameter</th><th>in</th><th>type</th><th>description</th></tr>",
        );
        for p in params {
            html.push_str(&format!(
                "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(p["name"].as_str().unwrap_or("")),
                if p["required"].as_bool() == Some(true) {
                    " *"
                } else {
                    ""
                },
                esc(p["in"].as_str().unwrap_or("")),
                schema_name(&p["schema"]),
                prose(p["description"].as_str().unwrap_or("")),
            ));
        }
        html.push_str("</table>");
    }
    if let Some(content) = op["requestBody"]["content"].as_object() {
        let bodies: Vec<String> = content
            .iter()
            .map(|(ct, c)| format!("<code>{}</code>: {}", esc(ct), schema_name(&c["schema"])))
            .collect();
        html.push_str(&format!("<p><b>Body</b> {}</p>", bodies.join("; ")));
    }
    if let Some(responses) = op["responses"].as_object() {
        html.push_str("<table><tr><th>status</th><th>meaning</th><th>body</th></tr>");
        for (status, r) in responses {
            let body = r["content"]
                .as_object()
                .map(|c| {
                    c.values()
                        .map(|c| schema_name(&c["schema"]))
                        .collect::<Vec<_>>()
                        .join(" | ")
                })
                .unwrap_or_default();
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(status),
                esc(r["description"].as_str().unwrap_or("")),
                body
            ));
        }
        html.push_str("</table>");
    }
    html.push_str("</div>");
}
