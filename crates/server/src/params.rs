//! Query-string and search-body parsing into store queries. Query parameters that are unknown,
//! repeated where they may not be, or invalid are 400 naming the parameter; the same problems in
//! a JSON body are 422 naming the field.

use std::collections::BTreeMap;

use sealtrail_model::{FieldError, Timestamp};
use sealtrail_store::fields::{ACTOR_ID, Exposure, TARGET_ID, TARGET_TYPE};
use sealtrail_store::{Cursor, EventFilter, Field, Order};
use serde_json::Value;

/// Default page size.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest page size.
pub const MAX_LIMIT: usize = 1000;
/// Longest `q`, in characters.
pub const MAX_Q_CHARS: usize = 1024;

/// The filters an entity list takes from its path instead of its query.
pub const ENTITY_FIXED: [Field; 2] = [TARGET_TYPE, TARGET_ID];
/// The filters an actor's list takes from its path instead of its query.
pub const USER_FIXED: [Field; 1] = [ACTOR_ID];

/// The filters a list takes as query parameters (each repeatable): every declared field
/// exposed to lists, except those its path fixes.
pub fn list_filters(fixed: &[Field]) -> impl Iterator<Item = Field> + '_ {
    Field::all().filter(move |f| f.spec().exposure == Exposure::List && !fixed.contains(f))
}

/// Parameters shared by every list.
#[derive(Debug, Default)]
pub struct ListParams {
    /// The filters.
    pub filter: EventFilter,
    /// The tenant named, if any.
    pub tenant: Option<String>,
    /// The direction.
    pub order: Order,
    /// The page size.
    pub limit: usize,
    /// Where to start.
    pub cursor: Option<Cursor>,
}

/// Collects problems; `in_body` decides 400 (query) or 422 (body) at the end.
#[derive(Default)]
pub struct Problems(pub Vec<FieldError>);

impl Problems {
    fn push(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }
}

/// Refuses any query parameter, for routes that take none: 400 naming each.
pub fn no_parameters(raw: Option<&str>) -> Result<(), crate::error::ApiError> {
    let unknown: Vec<FieldError> = split_query(raw)
        .into_keys()
        .map(|name| FieldError::new(name, "is not a known parameter"))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(crate::error::ApiError::BadParameters(unknown))
    }
}

/// Splits a raw query string into repeated values per name.
pub fn split_query(raw: Option<&str>) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        map.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    map
}

/// Parses list parameters from a query string. `allowed` are the filters this endpoint takes
/// as parameters ([`list_filters`]; an entity list takes no `target_*` parameter).
pub fn parse_list_query(
    raw: Option<&str>,
    allowed: &[Field],
) -> Result<ListParams, Vec<FieldError>> {
    let map = split_query(raw);
    let mut p = Problems::default();
    let mut params = ListParams {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    for (name, values) in map {
        let name_str = name.as_str();
        if let Some(field) = Field::by_name(name_str).filter(|f| allowed.contains(f)) {
            for value in &values {
                add_filter(&mut params.filter, field, name_str, value, &mut p);
            }
            continue;
        }
        let single = || -> Result<&String, &'static str> {
            if values.len() > 1 {
                Err("may be given only once")
            } else {
                Ok(&values[0])
            }
        };
        match name_str {
            "from" | "to" | "order" | "limit" | "cursor" | "tenant" => match single() {
                Err(msg) => p.push(name_str, msg),
                Ok(value) => {
                    set_common(&mut params, name_str, &Value::String(value.clone()), &mut p)
                }
            },
            "q" => match single() {
                Err(msg) => p.push("q", msg),
                Ok(value) => set_words(&mut params.filter, value, &mut p),
            },
            _ => p.push(name_str, "is not a known parameter"),
        }
    }
    if p.0.is_empty() { Ok(params) } else { Err(p.0) }
}

/// Parses an export's query: `format` (`csv`, `json` or `ndjson`; default `ndjson`), every
/// list filter, `from`, `to`, `order` (default `asc`: exports run oldest first) and `tenant`.
/// `limit` and `cursor` are refused: an export holds every match.
pub fn parse_export_query(
    raw: Option<&str>,
) -> Result<(sealtrail_store::export::Format, ListParams), Vec<FieldError>> {
    let mut p = Problems::default();
    let mut format = sealtrail_store::export::Format::Ndjson;
    let mut rest = form_urlencoded::Serializer::new(String::new());
    let mut order_given = false;
    let mut formats = 0;
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "format" => {
                formats += 1;
                match sealtrail_store::export::Format::parse(&v) {
                    Some(f) => format = f,
                    None => p.push("format", "must be csv, json or ndjson"),
                }
            }
            "limit" | "cursor" => p.push(
                &k,
                "is not a parameter of exports: an export holds every matching event",
            ),
            _ => {
                order_given |= k == "order";
                rest.append_pair(&k, &v);
            }
        }
    }
    if formats > 1 {
        p.push("format", "may be given only once");
    }
    let all: Vec<Field> = list_filters(&[]).collect();
    let rest = rest.finish();
    match parse_list_query(Some(&rest), &all) {
        Ok(mut params) if p.0.is_empty() => {
            if !order_given {
                params.order = Order::Asc;
            }
            Ok((format, params))
        }
        Ok(_) => Err(p.0),
        Err(mut errors) => {
            p.0.append(&mut errors);
            Err(p.0)
        }
    }
}

/// Adds one value of a filter, as its declaration parses it; `name` is where it was given.
fn add_filter(filter: &mut EventFilter, field: Field, name: &str, value: &str, p: &mut Problems) {
    if value.is_empty() {
        p.push(name, "must not be empty");
        return;
    }
    match (field.spec().parse)(value) {
        Ok(v) => filter.fields.entry(field).or_default().push(v),
        Err(msg) => p.push(name, msg),
    }
}

/// Sets `q`, the words of a full-text search ([`sealtrail_store::text`]).
fn set_words(filter: &mut EventFilter, q: &str, p: &mut Problems) {
    if q.chars().count() > MAX_Q_CHARS {
        p.push("q", format!("must be at most {MAX_Q_CHARS} characters"));
        return;
    }
    match sealtrail_store::text::query_words(q) {
        Ok(words) => filter.words = words,
        Err(msg) => p.push("q", msg),
    }
}

/// Sets one of the non-filter parameters from a string (query) or JSON (body) value.
fn set_common(params: &mut ListParams, name: &str, value: &Value, p: &mut Problems) {
    match name {
        "from" | "to" => match value.as_str().and_then(Timestamp::parse_rfc3339) {
            Some(t) if name == "from" => params.filter.from = Some(t),
            Some(t) => params.filter.to = Some(t),
            None => p.push(name, "must be an RFC 3339 date-time"),
        },
        "order" => match value.as_str() {
            Some("desc") => params.order = Order::Desc,
            Some("asc") => params.order = Order::Asc,
            _ => p.push(name, "must be asc or desc"),
        },
        "limit" => {
            let n = match value {
                Value::String(s) => s.parse::<usize>().ok(),
                Value::Number(n) => sealtrail_model::json::whole_number(n).map(|n| n as usize),
                _ => None,
            };
            match n {
                Some(n @ 1..=MAX_LIMIT) => params.limit = n,
                _ => p.push(name, format!("must be an integer from 1 to {MAX_LIMIT}")),
            }
        }
        "cursor" => match value.as_str().map(Cursor::decode) {
            Some(Ok(c)) => params.cursor = Some(c),
            _ => p.push(name, "is not a cursor this server issued"),
        },
        "tenant" => match value.as_str() {
            Some(t) => params.tenant = Some(t.to_owned()),
            None => p.push(name, "must be a string"),
        },
        _ => p.push(name, "is not a known field"),
    }
}

/// Parses a `POST /audit-logs/search` body: every filter as a string or a list of strings,
/// plus `changed_field`, `metadata` (an object), `from`, `to`, `order`, `limit`, `cursor` and
/// `tenant`.
pub fn parse_search_body(body: Value) -> Result<ListParams, Vec<FieldError>> {
    let mut p = Problems::default();
    let mut params = ListParams {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    let Value::Object(map) = body else {
        return Err(vec![FieldError::new(
            "$",
            "the search body must be a JSON object",
        )]);
    };
    for (name, value) in map {
        let name = name.as_str();
        if let Some(field) = Field::by_name(name) {
            let values: Vec<Value> = match value {
                Value::Null => Vec::new(),
                Value::Array(items) => items,
                one => vec![one],
            };
            for (i, v) in values.iter().enumerate() {
                match v.as_str() {
                    Some(s) => add_filter(&mut params.filter, field, name, s, &mut p),
                    None => p.push(&format!("{name}[{i}]"), "must be a string"),
                }
            }
            continue;
        }
        match name {
            "metadata" => match value {
                Value::Null => {}
                Value::Object(_) => params.filter.metadata = Some(value),
                _ => p.push("metadata", "must be a JSON object"),
            },
            // A known field given as null is left out; an unknown one is refused either way.
            "q" | "from" | "to" | "order" | "limit" | "cursor" | "tenant" if value.is_null() => {}
            "q" => match value.as_str() {
                Some(q) => set_words(&mut params.filter, q, &mut p),
                None => p.push("q", "must be a string"),
            },
            "from" | "to" | "order" | "limit" | "cursor" | "tenant" => {
                set_common(&mut params, name, &value, &mut p)
            }
            _ => p.push(name, "is not a known field"),
        }
    }
    if p.0.is_empty() { Ok(params) } else { Err(p.0) }
}

/// What `GET /audit-logs/statistics` asks, before the tenant is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsParams {
    /// The window's start (default: 30 days before `to`).
    pub from: Timestamp,
    /// The window's end, excluded (default: now).
    pub to: Timestamp,
    /// Hour or day buckets (default: day).
    pub bucket: sealtrail_store::rollup::Span,
    /// Entries per top list (default 10).
    pub top: usize,
    /// The tenant named, if any.
    pub tenant: Option<String>,
}

/// The window statistics cover when `from` is not given: this long before `to`.
pub const DEFAULT_STATS_WINDOW_MICROS: i64 = 30 * 86_400_000_000;
/// Entries per top list when `top` is not given.
pub const DEFAULT_TOP: usize = 10;

/// Parses a statistics query: `from`, `to` (RFC 3339), `bucket` (`day` or `hour`), `top`
/// (0–1000) and `tenant`, each at most once; `now` settles the default window.
pub fn parse_stats_query(
    raw: Option<&str>,
    now: Timestamp,
) -> Result<StatsParams, Vec<FieldError>> {
    use sealtrail_store::rollup::Span;
    use sealtrail_store::stats::{MAX_BUCKETS, MAX_TOP};
    let mut p = Problems::default();
    let (mut from, mut to, mut bucket, mut top, mut tenant) =
        (None, None, Span::Day, DEFAULT_TOP, None);
    for (name, values) in split_query(raw) {
        if values.len() > 1 {
            p.push(&name, "may be given only once");
            continue;
        }
        let value = values[0].as_str();
        match name.as_str() {
            "from" | "to" => match Timestamp::parse_rfc3339(value) {
                Some(t) if name == "from" => from = Some(t),
                Some(t) => to = Some(t),
                None => p.push(&name, "must be an RFC 3339 date-time"),
            },
            "bucket" => match value {
                "day" => bucket = Span::Day,
                "hour" => bucket = Span::Hour,
                _ => p.push("bucket", "must be day or hour"),
            },
            "top" => match value.parse::<usize>() {
                Ok(n) if n <= MAX_TOP => top = n,
                _ => p.push("top", format!("must be an integer from 0 to {MAX_TOP}")),
            },
            "tenant" => tenant = Some(value.to_owned()),
            _ => p.push(&name, "is not a known parameter"),
        }
    }
    if !p.0.is_empty() {
        return Err(p.0);
    }
    let to = to.unwrap_or(now);
    let from = from.unwrap_or_else(|| {
        Timestamp::from_micros(to.micros().saturating_sub(DEFAULT_STATS_WINDOW_MICROS))
    });
    if from > to {
        p.push("from", "must not be after to");
        return Err(p.0);
    }
    let params = StatsParams {
        from,
        to,
        bucket,
        top,
        tenant,
    };
    if sealtrail_store::stats::bucket_count(bucket, from, to) > MAX_BUCKETS {
        p.push(
            "bucket",
            format!("the window holds more than {MAX_BUCKETS} buckets of this size: narrow it or use day buckets"),
        );
        return Err(p.0);
    }
    Ok(params)
}

/// Reads a query string of single-valued parameters: `tenant` and the non-negative integers
/// named in `names`; anything else, or anything repeated, is a 400 naming it.
pub fn tenant_and_counts(
    raw: Option<&str>,
    names: &[&str],
) -> Result<(Option<String>, Vec<Option<u64>>), crate::error::ApiError> {
    let map = split_query(raw);
    let mut tenant = None;
    let mut values = vec![None; names.len()];
    for (name, given) in map {
        if given.len() > 1 {
            return Err(crate::error::ApiError::bad_parameter(
                name,
                "may be given only once",
            ));
        }
        if name == "tenant" {
            tenant = given.into_iter().next();
        } else if let Some(i) = names.iter().position(|n| *n == name) {
            let value = given[0].parse::<u64>().map_err(|_| {
                crate::error::ApiError::bad_parameter(
                    name.clone(),
                    "must be a non-negative integer",
                )
            })?;
            values[i] = Some(value);
        } else {
            return Err(crate::error::ApiError::bad_parameter(
                name,
                "is not a known parameter",
            ));
        }
    }
    Ok((tenant, values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(result: Result<ListParams, Vec<FieldError>>) -> Vec<String> {
        match result {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn query_parameters_table() {
        let all: Vec<Field> = list_filters(&[]).collect();
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("action=a&action=b&actor_id=u", &[]),
            ("limit=0", &["limit"]),
            ("limit=1001", &["limit"]),
            ("limit=x", &["limit"]),
            ("limit=5&limit=6", &["limit"]),
            ("order=sideways", &["order"]),
            ("from=yesterday", &["from"]),
            ("category=destroy", &["category"]),
            ("outcome=meh", &["outcome"]),
            ("ip=1.2.3", &["ip"]),
            ("cursor=nope", &["cursor"]),
            ("colour=red", &["colour"]),
            ("q=hello", &[]),
            ("q=Invoice.Paid&action=a", &[]),
            ("q=", &[]),
            ("q=a&q=b", &["q"]),
            (
                "q=a+b+c+d+e+f+g+h+i+j+k+l+m+n+o+p+q+r+s+t+u+v+w+x+y+z+0+1+2+3+4+5+6",
                &[],
            ),
            ("actor_id=", &["actor_id"]),
        ];
        for (query, expected) in cases {
            assert_eq!(
                fields(parse_list_query(Some(query), &all)),
                *expected,
                "{query}"
            );
        }
    }

    #[test]
    fn ips_are_canonicalised_for_filtering() {
        let all: Vec<Field> = list_filters(&[]).collect();
        let params = parse_list_query(Some("ip=2001:DB8:0:0::1"), &all).expect("valid");
        assert_eq!(
            params.filter.values(sealtrail_store::fields::IP),
            ["2001:db8::1"]
        );
    }

    #[test]
    fn search_bodies_take_lists_and_name_bad_fields() {
        let params = parse_search_body(json!({
            "action": ["a", "b"], "actor_id": "u", "changed_field": "status",
            "metadata": {"k": 1}, "limit": 10, "order": "asc", "q": "Paid, INVOICE paid"
        }))
        .expect("valid");
        assert_eq!(params.filter.words, ["paid", "invoice"]);
        assert_eq!(
            params.filter.values(sealtrail_store::fields::ACTION),
            ["a", "b"]
        );
        assert_eq!(
            params.filter.values(sealtrail_store::fields::CHANGED_FIELD),
            ["status"]
        );
        assert_eq!(params.limit, 10);
        let errors = parse_search_body(
            json!({"action": [1], "metadata": [], "limit": 0, "x": 1, "q": ["a"]}),
        )
        .expect_err("invalid");
        let mut fields: Vec<String> = errors.into_iter().map(|e| e.field).collect();
        fields.sort();
        assert_eq!(fields, ["action[0]", "limit", "metadata", "q", "x"]);
    }
}
