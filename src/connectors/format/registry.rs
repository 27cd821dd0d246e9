//! A client of a Confluent-compatible schema registry, for records in the
//! Confluent wire format (`00`, a 4-byte big-endian schema id, the datum):
//! Avro, or JSON documents registered with a JSON Schema.
//!
//! Writer schemas are fetched by id (`GET {url}/schemas/ids/{id}`) by the
//! reader thread before it submits a chunk for decoding
//! ([`Registry::fetch_missing`]); decoders only read the cache
//! ([`Registry::lookup`]), so a decoder never waits on the network and never
//! fails a record because the registry is slow. The two outcomes are kept
//! apart:
//! - an id the registry says it does not have (404 with error code 40403), or a
//!   schema of another type (JSON for an Avro source, …), is a property of the record: the decoder rejects
//!   the record (dead letter);
//! - a registry that cannot be reached, times out or answers an error (5xx,
//!   401, …) is an outage: `fetch_missing` returns the reason and the reader
//!   retries with backoff, losing and skipping nothing.
//!
//! Bounded: ids are immutable in a registry, so found schemas are cached for
//! good, up to [`MAX_SCHEMAS`] schemas and [`MAX_CACHE_BYTES`] of schema text
//! (least recently used first out); an answer may be at most
//! [`MAX_RESPONSE_BYTES`]; a request gives up after [`TIMEOUT`]. An id found
//! missing is asked again after [`MISSING_TTL`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::RwLock;

use super::Record;

/// Most schemas kept.
pub const MAX_SCHEMAS: usize = 1000;
/// Most schema text kept, in bytes.
pub const MAX_CACHE_BYTES: usize = 64 << 20;
/// Largest registry answer read, in bytes.
pub const MAX_RESPONSE_BYTES: u64 = 1 << 20;
/// Longest a request to the registry may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long an id the registry does not have is remembered as missing.
pub const MISSING_TTL: Duration = Duration::from_secs(30);

/// The schema id of a record in the Confluent wire format.
pub fn confluent_id(payload: &[u8]) -> Result<u32, String> {
    match payload {
        [0, a, b, c, d, ..] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err(format!(
            "not in the Confluent wire format (a 0 byte, a 4-byte schema id, then the \
             datum): {}",
            match payload.first() {
                None => "the record is empty".to_string(),
                Some(0) => format!("only {} bytes", payload.len()),
                Some(b) => format!("it starts with byte {b:#04x}"),
            }
        )),
    }
}

/// What the cache holds for an id.
#[derive(Debug, Clone)]
enum Entry {
    /// The writer schema (JSON).
    Schema(Arc<str>),
    /// The id can never be read (not an Avro schema, references); why.
    Unreadable(Arc<str>),
    /// The registry did not have the id when asked; why, and until when that holds.
    Missing(Arc<str>, Instant),
}

struct Cached {
    entry: Entry,
    /// When it was last used (a tick of [`Cache::tick`]).
    used: u64,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<u32, Cached>,
    bytes: usize,
    tick: u64,
}

fn size(e: &Entry) -> usize {
    match e {
        Entry::Schema(s) | Entry::Unreadable(s) | Entry::Missing(s, _) => s.len() + 64,
    }
}

impl Cache {
    fn insert(&mut self, id: u32, entry: Entry) {
        self.tick += 1;
        self.bytes += size(&entry);
        let old = self.entries.insert(
            id,
            Cached {
                entry,
                used: self.tick,
            },
        );
        if let Some(old) = old {
            self.bytes -= size(&old.entry);
        }
        // Least recently used out; the entry just added has the newest tick.
        while self.entries.len() > MAX_SCHEMAS || self.bytes > MAX_CACHE_BYTES {
            let Some((&oldest, _)) = self.entries.iter().min_by_key(|(_, c)| c.used) else {
                break;
            };
            if oldest == id {
                break;
            }
            if let Some(c) = self.entries.remove(&oldest) {
                self.bytes -= size(&c.entry);
            }
        }
    }
}

/// What a decoder finds for a schema id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The writer schema (JSON).
    Schema(Arc<str>),
    /// Records with this id are rejected, for this reason.
    Rejected(Arc<str>),
}

/// The type of schema a source reads from a registry (its `schemaType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaKind {
    /// `AVRO` (the registry's default).
    Avro,
    /// `JSON`: a JSON Schema.
    Json,
    /// `PROTOBUF`: `.proto` text.
    Protobuf,
}

impl SchemaKind {
    /// The registry's name for it.
    pub fn name(self) -> &'static str {
        match self {
            SchemaKind::Avro => "AVRO",
            SchemaKind::Json => "JSON",
            SchemaKind::Protobuf => "PROTOBUF",
        }
    }
}

/// A schema registry and the writer schemas fetched from it.
pub struct Registry {
    /// The type of schema records must name.
    kind: SchemaKind,
    url: String,
    username: Option<String>,
    /// `Authorization` header value.
    auth: Option<String>,
    agent: ureq::Agent,
    cache: RwLock<Cache>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("url", &self.url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Registry {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url && self.auth == other.auth
    }
}

impl Eq for Registry {}

impl Registry {
    /// Read `schema.registry.url` and its credentials from `options`, removing
    /// them; `None` without a URL. For Avro schemas. Contacts nobody.
    pub fn from_options(
        options: &mut BTreeMap<String, String>,
    ) -> Result<Option<Arc<Registry>>, String> {
        Self::from_options_for(options, SchemaKind::Avro)
    }

    /// [`Registry::from_options`] for schemas of type `kind`.
    pub fn from_options_for(
        options: &mut BTreeMap<String, String>,
        kind: SchemaKind,
    ) -> Result<Option<Arc<Registry>>, String> {
        let url = options.remove("schema.registry.url");
        let username = options.remove("schema.registry.username");
        let password = options.remove("schema.registry.password");
        let Some(url) = url else {
            if username.is_some() || password.is_some() {
                return Err(
                    "'schema.registry.username' and 'schema.registry.password' need \
                            'schema.registry.url'"
                        .into(),
                );
            }
            return Ok(None);
        };
        let url = url.trim().trim_end_matches('/').to_string();
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
            return Err(format!(
                "'schema.registry.url' must be one http:// or https:// URL, got '{url}'"
            ));
        }
        let auth = match (&username, password) {
            (None, None) => None,
            (Some(u), Some(p)) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )),
            _ => {
                return Err(
                    "'schema.registry.username' and 'schema.registry.password' go \
                            together"
                        .into(),
                )
            }
        };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .timeout_connect(Some(TIMEOUT / 2))
            .http_status_as_error(false)
            .max_redirects(3)
            .user_agent("eddy")
            .build()
            .new_agent();
        Ok(Some(Arc::new(Registry {
            kind,
            url,
            username,
            auth,
            agent,
            cache: RwLock::new(Cache::default()),
        })))
    }

    /// The registry's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What the cache says about schema id `id`.
    pub fn lookup(&self, id: u32) -> Lookup {
        match self.cache.read().entries.get(&id).map(|c| &c.entry) {
            Some(Entry::Schema(s)) => Lookup::Schema(s.clone()),
            Some(Entry::Unreadable(why)) | Some(Entry::Missing(why, _)) => {
                Lookup::Rejected(why.clone())
            }
            None => Lookup::Rejected(
                format!(
                    "schema id {id} is not in the schema cache (more than {MAX_SCHEMAS} \
                     schemas in use at once)"
                )
                .into(),
            ),
        }
    }

    /// Fetch the writer schema of every record of `records` in the Confluent
    /// wire format whose id is not cached (or was missing a while ago); with
    /// `keys`, also those of the keys of records with a null value
    /// (tombstones). Records with an id the registry does not have, or not
    /// in the wire format, are left for the decoder to reject. `Err`: the
    /// registry cannot be reached or answered with an error; try again later.
    pub fn fetch_missing(&self, records: &[Record], keys: bool) -> Result<(), String> {
        let mut wanted: Vec<u32> = Vec::new();
        {
            let now = Instant::now();
            let mut cache = self.cache.write();
            cache.tick += 1;
            let tick = cache.tick;
            let mut last = None;
            for r in records {
                let framed = match (&r.key, keys && r.payload.is_empty()) {
                    (Some(key), true) => key,
                    _ => &r.payload,
                };
                let Ok(id) = confluent_id(framed) else {
                    continue;
                };
                if last == Some(id) {
                    continue;
                }
                last = Some(id);
                match cache.entries.get_mut(&id) {
                    Some(c) if !matches!(c.entry, Entry::Missing(_, until) if until <= now) => {
                        c.used = tick
                    }
                    _ if !wanted.contains(&id) => wanted.push(id),
                    _ => {}
                }
            }
        }
        for id in wanted {
            let entry = self.fetch(id)?;
            self.cache.write().insert(id, entry);
        }
        Ok(())
    }

    /// Ask the registry for schema id `id`.
    fn fetch(&self, id: u32) -> Result<Entry, String> {
        let req = self.headers(self.agent.get(format!("{}/schemas/ids/{id}", self.url)));
        let (status, body) = self.answer_to(req.call(), &format!("schema id {id}"))?;
        answer(&self.url, self.kind, id, status, &body)
    }

    /// `req` with the registry's media type and credentials.
    fn headers<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        let req = req.header(
            "Accept",
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        match &self.auth {
            Some(a) => req.header("Authorization", a),
            None => req,
        }
    }

    /// The status and text (at most [`MAX_RESPONSE_BYTES`]) of the answer to
    /// a request for `what`, or why there is none.
    fn answer_to(
        &self,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        what: &str,
    ) -> Result<(u16, String), String> {
        let mut resp = sent.map_err(|e| {
            format!(
                "cannot reach the schema registry at {} for {what}: {e}",
                self.url
            )
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_string()
            .map_err(|e| {
                format!(
                    "cannot read the schema registry's answer for {what} from {}: {e}",
                    self.url
                )
            })?;
        Ok((status, text))
    }
}

impl Registry {
    /// Register Avro schema `schema` (JSON) under `subject`
    /// (`POST {url}/subjects/{subject}/versions`) and return its id; the
    /// registry gives the id it already has for a schema registered before.
    /// Blocks for at most [`TIMEOUT`].
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, String> {
        let body = serde_json::json!({ "schema": schema, "schemaType": "AVRO" }).to_string();
        let req = self
            .headers(
                self.agent
                    .post(format!("{}/subjects/{subject}/versions", self.url)),
            )
            .header("Content-Type", "application/vnd.schemaregistry.v1+json");
        let (status, text) =
            self.answer_to(req.send(body.as_bytes()), &format!("subject '{subject}'"))?;
        let id = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["id"].as_u64())
            .and_then(|id| u32::try_from(id).ok());
        match id {
            Some(id) if status == 200 => Ok(id),
            _ => {
                let mut shown: String = text.chars().take(200).collect();
                if shown.len() < text.len() {
                    shown.push('…');
                }
                Err(format!(
                    "the schema registry at {} answered HTTP {status} to registering subject \
                     '{subject}': {shown}",
                    self.url
                ))
            }
        }
    }
}

/// A registry for schemas of type `kind` at an address nobody answers:
/// tests fill its cache with [`cache_answer`].
#[cfg(test)]
pub(super) fn test_registry(kind: SchemaKind) -> Arc<Registry> {
    let mut o = BTreeMap::from([(
        "schema.registry.url".to_string(),
        "http://127.0.0.1:9".to_string(),
    )]);
    match Registry::from_options_for(&mut o, kind) {
        Ok(Some(r)) => r,
        other => panic!("a registry for tests: {other:?}"),
    }
}

/// Cache the registry's answer (`status`, `body`) about `id` as if fetched.
#[cfg(test)]
pub(super) fn cache_answer(r: &Registry, id: u32, status: u16, body: &str) {
    if let Ok(e) = answer(&r.url, r.kind, id, status, body) {
        r.cache.write().insert(id, e);
    }
}

/// The cache entry for the registry's answer (`status`, `body`) about `id`,
/// or the outage it shows.
fn answer(url: &str, kind: SchemaKind, id: u32, status: u16, body: &str) -> Result<Entry, String> {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    if status == 404 {
        if let Some(v) = json.as_ref().filter(|v| v["error_code"] == 40403) {
            let message = v["message"].as_str().unwrap_or("Schema not found");
            return Ok(Entry::Missing(
                format!("schema id {id} is not in the schema registry at {url} ({message})").into(),
                Instant::now() + MISSING_TTL,
            ));
        }
    }
    let message = |what: &str| {
        let mut text: String = body.chars().take(200).collect();
        if text.len() < body.len() {
            text.push('…');
        }
        format!("the schema registry at {url} answered {what} for schema id {id}: {text}")
    };
    if status != 200 {
        return Err(message(&format!("HTTP {status}")));
    }
    let Some(v) = json else {
        return Err(message("something that is not JSON"));
    };
    let Some(schema) = v["schema"].as_str() else {
        return Err(message("JSON without a \"schema\" string"));
    };
    // A registry leaves `schemaType` out for Avro, its default.
    let found = v["schemaType"].as_str().unwrap_or("AVRO");
    if found != kind.name() {
        let format = match kind {
            SchemaKind::Avro => "avro",
            SchemaKind::Json => "json",
            SchemaKind::Protobuf => "protobuf",
        };
        return Ok(Entry::Unreadable(
            format!(
                "schema id {id} is of type {found}; format '{format}' reads only {} schemas",
                kind.name()
            )
            .into(),
        ));
    }
    if v["references"].as_array().is_some_and(|r| !r.is_empty()) {
        return Ok(Entry::Unreadable(
            format!(
                "schema id {id} references other registered schemas, which eddy does not \
                 resolve yet"
            )
            .into(),
        ));
    }
    Ok(Entry::Schema(schema.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_header() {
        assert_eq!(confluent_id(&[0, 0, 0, 1, 2, 9, 9]), Ok(258));
        assert_eq!(confluent_id(&[0, 0, 0, 0, 7]), Ok(7));
        let e = confluent_id(b"{\"a\": 1}").unwrap_err();
        assert!(e.contains("starts with byte 0x7b"), "{e}");
        assert!(confluent_id(&[0, 0, 1])
            .unwrap_err()
            .contains("only 3 bytes"));
        assert!(confluent_id(&[]).unwrap_err().contains("empty"));
    }

    #[test]
    fn registry_answers() {
        let url = "http://r";
        let ok = answer(url, SchemaKind::Avro, 1, 200, r#"{"schema": "\"long\""}"#).unwrap();
        assert!(matches!(ok, Entry::Schema(s) if &*s == "\"long\""));
        let ok = answer(
            url,
            SchemaKind::Avro,
            1,
            200,
            r#"{"schema": "{}", "schemaType": "AVRO"}"#,
        )
        .unwrap();
        assert!(matches!(ok, Entry::Schema(_)));
        let proto = answer(
            url,
            SchemaKind::Avro,
            2,
            200,
            r#"{"schema": "x", "schemaType": "PROTOBUF"}"#,
        )
        .unwrap();
        assert!(matches!(proto, Entry::Unreadable(s) if s.contains("PROTOBUF")));
        // A JSON source reads JSON Schemas only; an Avro source not those.
        let json = r#"{"schema": "{\"type\": \"object\"}", "schemaType": "JSON"}"#;
        assert!(matches!(
            answer(url, SchemaKind::Json, 5, 200, json).unwrap(),
            Entry::Schema(_)
        ));
        let avro = answer(url, SchemaKind::Json, 1, 200, r#"{"schema": "\"long\""}"#).unwrap();
        assert!(
            matches!(&avro, Entry::Unreadable(s) if s.contains("is of type AVRO; format 'json'")),
            "{avro:?}"
        );
        let wrong = answer(url, SchemaKind::Avro, 5, 200, json).unwrap();
        assert!(matches!(wrong, Entry::Unreadable(s) if s.contains("reads only AVRO")));
        let missing = answer(
            url,
            SchemaKind::Avro,
            3,
            404,
            r#"{"error_code": 40403, "message": "Schema 3 not found"}"#,
        )
        .unwrap();
        assert!(
            matches!(&missing, Entry::Missing(s, _) if s.contains("schema id 3 is not in the schema registry")),
            "{missing:?}"
        );
        // Outages: another 404 (a wrong URL), server errors, answers that are not a registry's.
        assert!(answer(url, SchemaKind::Avro, 4, 404, "Not Found")
            .unwrap_err()
            .contains("HTTP 404"));
        assert!(answer(url, SchemaKind::Avro, 4, 503, "busy")
            .unwrap_err()
            .ends_with("answered HTTP 503 for schema id 4: busy"));
        assert!(answer(url, SchemaKind::Avro, 4, 401, "{}")
            .unwrap_err()
            .contains("HTTP 401"));
        assert!(answer(url, SchemaKind::Avro, 4, 200, "<html>")
            .unwrap_err()
            .contains("not JSON"));
        assert!(answer(url, SchemaKind::Avro, 4, 200, "{}")
            .unwrap_err()
            .contains("without"));
    }

    #[test]
    fn options() {
        let opts = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mut o = opts(&[("schema.registry.url", "http://localhost:8081/")]);
        let r = Registry::from_options(&mut o).unwrap().unwrap();
        assert_eq!(r.url(), "http://localhost:8081");
        assert!(o.is_empty());
        let mut o = opts(&[("schema.registry.url", "localhost:8081")]);
        assert!(Registry::from_options(&mut o)
            .unwrap_err()
            .contains("http://"));
        let mut o = opts(&[("schema.registry.username", "u")]);
        assert!(Registry::from_options(&mut o).unwrap_err().contains("need"));
        let mut o = opts(&[
            ("schema.registry.url", "https://r"),
            ("schema.registry.username", "u"),
        ]);
        assert!(Registry::from_options(&mut o)
            .unwrap_err()
            .contains("together"));
        let mut o = opts(&[
            ("schema.registry.url", "https://r"),
            ("schema.registry.username", "u"),
            ("schema.registry.password", "p"),
        ]);
        let r = Registry::from_options(&mut o).unwrap().unwrap();
        assert_eq!(r.auth.as_deref(), Some("Basic dTpw"));
        assert!(!format!("{r:?}").contains("dTpw"));
    }

    #[test]
    fn cache_is_bounded_and_keeps_recent_ids() {
        let mut c = Cache::default();
        for id in 0..(MAX_SCHEMAS as u32 + 10) {
            c.insert(id, Entry::Schema("\"long\"".into()));
        }
        assert_eq!(c.entries.len(), MAX_SCHEMAS);
        assert!(!c.entries.contains_key(&0));
        assert!(c.entries.contains_key(&(MAX_SCHEMAS as u32 + 9)));
        let big: String = "x".repeat(MAX_CACHE_BYTES / 2);
        c.insert(5000, Entry::Schema(big.clone().into()));
        c.insert(5001, Entry::Schema(big.into()));
        assert!(c.bytes <= MAX_CACHE_BYTES);
        assert!(c.entries.contains_key(&5001));
    }

    #[test]
    fn unreachable_registry_is_an_outage() {
        // A port nobody listens on: bind one, then close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut o = BTreeMap::from([(
            "schema.registry.url".to_string(),
            format!("http://127.0.0.1:{port}"),
        )]);
        let r = Registry::from_options(&mut o).unwrap().unwrap();
        let rec = |payload: Vec<u8>| Record {
            payload,
            ..Default::default()
        };
        // Nothing to fetch: no contact.
        assert_eq!(r.fetch_missing(&[rec(b"plain".to_vec())], false), Ok(()));
        let tombstone = Record {
            key: Some(vec![0, 0, 0, 0, 8, 2]),
            ..Default::default()
        };
        assert_eq!(
            r.fetch_missing(std::slice::from_ref(&tombstone), false),
            Ok(())
        );
        let e = r.fetch_missing(&[tombstone], true).unwrap_err();
        assert!(e.contains("schema id 8"), "{e}");
        let e = r
            .fetch_missing(&[rec(vec![0, 0, 0, 0, 9, 1])], false)
            .unwrap_err();
        assert!(e.contains("cannot reach the schema registry"), "{e}");
        assert!(matches!(r.lookup(9), Lookup::Rejected(_)));
    }
}
