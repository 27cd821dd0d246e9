//! The layering ARCHITECTURE.md promises, checked on the source: which
//! top-level module may use which, and no cycles between them.
//!
//! A "use" is any `crate::<module>` path outside comments, in any file under
//! `src/<module>/` (or `src/<module>.rs`), tests included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// (module, modules it must never use, why).
const FORBIDDEN: &[(&str, &[&str], &str)] = &[
    (
        "operators",
        &[
            "runtime",
            "engine",
            "catalog",
            "views",
            "connectors",
            "server",
            "plan",
            "state",
        ],
        "an operator knows nothing of tasks, channels, the catalog or views",
    ),
    (
        "runtime",
        &["engine", "catalog", "server", "plan", "connectors"],
        "the runtime runs a graph; it does not plan or know the catalog",
    ),
    (
        "types",
        &[
            "operators",
            "runtime",
            "engine",
            "catalog",
            "views",
            "connectors",
            "plan",
            "state",
        ],
        "the messages are the bottom layer",
    ),
    (
        "state",
        &["engine", "runtime", "catalog", "views", "server", "plan"],
        "checkpoints hold state; they do not run it",
    ),
    (
        "storage",
        &[
            "engine",
            "runtime",
            "catalog",
            "views",
            "server",
            "plan",
            "operators",
            "state",
        ],
        "durable files know nothing above them",
    ),
    (
        "connectors",
        &[
            "operators",
            "runtime",
            "plan",
            "engine",
            "catalog",
            "views",
            "server",
        ],
        "sources and sinks produce and consume streams; they do not run operators",
    ),
    (
        "plan",
        &["engine", "catalog", "server", "views", "connectors"],
        "the planner turns a logical plan into a graph",
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Top-level module → the top-level modules its code names.
fn uses() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a path");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("readable source");
        let used = out.entry(module.clone()).or_default();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for part in code.split("crate::").skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    used.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn no_layer_uses_what_it_must_not() {
    let uses = uses();
    assert!(
        uses.contains_key("operators") && uses.contains_key("runtime"),
        "{uses:?}"
    );
    let mut broken = Vec::new();
    for (module, forbidden, why) in FORBIDDEN {
        let used = uses.get(*module).cloned().unwrap_or_default();
        for f in forbidden.iter().filter(|f| used.contains(**f)) {
            broken.push(format!("{module} uses {f}: {why}"));
        }
    }
    for (module, used) in &uses {
        for front in ["server", "http"] {
            if used.contains(front) {
                broken.push(format!(
                    "{module} uses {front}: nothing depends on a protocol front end"
                ));
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn top_level_modules_have_no_cycles() {
    let uses = uses();
    // Depth-first search; a back edge is a cycle.
    fn visit(
        m: &str,
        uses: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut cycle = path[at..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in uses.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, uses, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in uses.keys() {
        if let Some(cycle) = visit(m, &uses, &mut Vec::new(), &mut done) {
            panic!("modules use each other in a cycle: {}", cycle.join(" → "));
        }
    }
}
